package main

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"os"
	"syscall"
)

// ring is the eventfd the pump posts to (shim.c, sem_up), as a pollable
// file: the feeder parks in Go's netpoller, holding no P, where a wait in
// a C call would hold one in a syscall state and set sysmon polling every
// 20 µs each time it took it back.
var ring *os.File

func ringWaitInit() { ring = os.NewFile(uintptr(C.rt_ring_fd()), "realtime-ring") }

// ringWait returns once the pump has started until events in all or given
// back a slot (rt_ring_arm).
func ringWait(until uint64) {
	if C.rt_ring_arm(C.uint64_t(until)) != 0 {
		return
	}
	var buf [8]byte
	for {
		n, err := ring.Read(buf[:])
		if n == len(buf) || (err != nil && !errors.Is(err, syscall.EINTR) && !errors.Is(err, syscall.EAGAIN)) {
			return // an error would be a bug: the feeder looks again rather than spin here
		}
	}
}
