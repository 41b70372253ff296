package main

import (
	"os"
	"runtime/debug"
)

// gcPercent is the garbage collector's target the module sets for the Go
// runtime it brings into the server process, where it is the only one:
// the heap may grow 25% over what is live before a collection, not Go's
// default 100% (and, as Go scales its 4 MiB minimum heap by the same
// percent, a small heap is collected from 1 MiB on). go-redis leaves about
// 250 bytes of garbage per message read, so with 10,000 events queued
// while the pump is stopped the default let the heap reach about twice
// what the events hold. The cost is more frequent collections of a heap
// that is small in this process (make bench: memory, cpu, throughput).
const gcPercent = 25

// setGC sets gcPercent unless the operator chose a percent in the GOGC
// environment variable (any value Go accepts, "off" included), which the
// Go runtime has applied already.
func setGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

func init() { setGC(os.Getenv) }
