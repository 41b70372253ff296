//go:build !linux

package main

/*
#include "shim.h"
*/
import "C"

func ringWaitInit() {}

// ringWait blocks until the pump has started until events in all or given
// back a slot (rt_ring_arm, then the semaphore in C).
func ringWait(until uint64) { C.rt_ring_wait(C.uint64_t(until)) }
