package main

// The functions the C shim calls. Each is a one-liner into bridge.go: cgo
// does not allow C definitions in the preamble of a file that exports.

/*
#include "shim.h"
*/
import "C"

//export rtgo_open
func rtgo_open() C.int { return guard(open) }

//export rtgo_close
func rtgo_close() { guard(closeState) }

//export rtgo_next
func rtgo_next(first, max C.int) C.int {
	return guard(func() C.int { return next(first != 0, int(max)) })
}

//export rtgo_handler_error
func rtgo_handler_error(event C.int, msg *C.char, n C.size_t) C.int {
	return guard(func() C.int { return handlerError(int(event), C.GoStringN(msg, C.int(n))) })
}

//export rtgo_take_log
func rtgo_take_log() C.int { return guard(takeLog) }

//export rtgo_handler
func rtgo_handler(name *C.char, n C.size_t, ref C.int) C.int {
	return guard(func() C.int { return handler(goString(name, n), ref) })
}

//export rtgo_on
func rtgo_on(pat *C.char, pn C.size_t, id *C.char, idn C.size_t, ref, exact C.int, decode *C.char, dn C.size_t, rate *C.char, rn C.size_t, burst C.int) C.int {
	return guard(func() C.int {
		return on(goString(pat, pn), goString(id, idn), ref, exact != 0, goString(decode, dn), goString(rate, rn), int(burst))
	})
}

//export rtgo_off
func rtgo_off(pat *C.char, pn C.size_t, id *C.char, idn C.size_t) C.int {
	return guard(func() C.int { return off(goString(pat, pn), goString(id, idn)) })
}

//export rtgo_publish
func rtgo_publish(ch *C.char, chn C.size_t, payload *C.char, pn C.size_t, table C.int) C.int {
	return guard(func() C.int { return publish(goString(ch, chn), goString(payload, pn), table != 0) })
}

//export rtgo_game_event
func rtgo_game_event(fn *C.char, n C.size_t) C.int {
	return guard(func() C.int { return gameEvent(goString(fn, n)) })
}

//export rtgo_configure
func rtgo_configure() C.int { return guard(configure) }

//export rtgo_connect
func rtgo_connect(url *C.char, n C.size_t) C.int {
	return guard(func() C.int { return connect(goString(url, n)) })
}

//export rtgo_disconnect
func rtgo_disconnect() C.int { return guard(disconnect) }

//export rtgo_status
func rtgo_status() C.int { return guard(status) }

//export rtgo_reload
func rtgo_reload() C.int { return guard(reload) }

//export rtgo_stats
func rtgo_stats() C.int { return guard(stats) }
