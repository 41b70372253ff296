package main

// The functions the C shim calls. Each is a one-liner into bridge.go: cgo
// does not allow C definitions in the preamble of a file that exports.
// Every call but the pump's gets an rt_out of its own (out) for its results.

/*
#include "shim.h"
*/
import "C"

import "github.com/gmod-realtime/realtime/module/api"

//export rtgo_open
func rtgo_open(out *C.rt_out) C.int { return guard(out, func() C.int { return open(out) }) }

//export rtgo_close
func rtgo_close() { guard(nil, closeState) }

//export rtgo_begin
func rtgo_begin() { guard(nil, begin) }

//export rtgo_finish
func rtgo_finish() { guard(nil, finish) }

//export rtgo_pump_error
func rtgo_pump_error(msg *C.char, n C.size_t) {
	guard(nil, func() C.int { return pumpError(C.GoStringN(msg, C.int(n))) })
}

//export rtgo_take_log
func rtgo_take_log(out *C.rt_out) C.int { return guard(out, func() C.int { return takeLog(out) }) }

//export rtgo_handler
func rtgo_handler(out *C.rt_out, name *C.char, n C.size_t, has C.int) C.int {
	return guard(out, func() C.int { return handler(out, goString(name, n), has != 0) })
}

//export rtgo_on
func rtgo_on(out *C.rt_out, pat *C.char, pn C.size_t, id *C.char, idn C.size_t, exact C.int, decode *C.char, dn C.size_t, rate *C.char, rn C.size_t, burst C.double) C.int {
	return guard(out, func() C.int {
		return on(out, goString(pat, pn), goString(id, idn), exact != 0, goString(decode, dn), goString(rate, rn), float64(burst))
	})
}

//export rtgo_on_name
func rtgo_on_name(out *C.rt_out, pat *C.char, pn C.size_t, id *C.char, idn C.size_t, stream C.int) C.int {
	return guard(out, func() C.int { return onName(out, goString(pat, pn), goString(id, idn), stream != 0) })
}

//export rtgo_stream
func rtgo_stream(out *C.rt_out, st *C.char, sn C.size_t, id *C.char, idn C.size_t, decode *C.char, dn C.size_t, group *C.char, gn C.size_t,
	start *C.char, stn C.size_t, claim *C.char, cn C.size_t, maxDeliveries C.double, hasMax C.int) C.int {
	return guard(out, func() C.int {
		return stream(out, goString(st, sn), goString(id, idn), api.StreamOptions{Decode: goString(decode, dn), Group: goString(group, gn),
			Start: goString(start, stn), ClaimAfter: goString(claim, cn), MaxDeliveries: float64(maxDeliveries), HasMaxDeliveries: hasMax != 0})
	})
}

//export rtgo_off
func rtgo_off(out *C.rt_out, pat *C.char, pn C.size_t, id *C.char, idn C.size_t, byPattern C.int) C.int {
	return guard(out, func() C.int { return off(out, goString(pat, pn), goString(id, idn), byPattern != 0) })
}

//export rtgo_publish
func rtgo_publish(out *C.rt_out, ch *C.char, chn C.size_t, payload *C.char, pn C.size_t, table C.int) C.int {
	return guard(out, func() C.int { return publish(out, channelString(ch, chn), goString(payload, pn), table != 0) })
}

//export rtgo_append
func rtgo_append(out *C.rt_out, st *C.char, sn C.size_t, payload *C.char, pn C.size_t, table C.int) C.int {
	return guard(out, func() C.int { return appendEntry(out, goString(st, sn), goString(payload, pn), table != 0) })
}

//export rtgo_game_event
func rtgo_game_event(out *C.rt_out, fn *C.char, n C.size_t) C.int {
	return guard(out, func() C.int { return gameEvent(out, goString(fn, n)) })
}

//export rtgo_configure
func rtgo_configure(out *C.rt_out) C.int { return guard(out, func() C.int { return configure(out) }) }

//export rtgo_connect
func rtgo_connect(out *C.rt_out, url *C.char, n C.size_t) C.int {
	return guard(out, func() C.int { return connect(out, goString(url, n)) })
}

//export rtgo_disconnect
func rtgo_disconnect(out *C.rt_out) C.int { return guard(out, disconnect) }

//export rtgo_status
func rtgo_status(out *C.rt_out) C.int { return guard(out, func() C.int { return status(out) }) }

//export rtgo_reload
func rtgo_reload(out *C.rt_out) C.int { return guard(out, func() C.int { return reload(out) }) }

//export rtgo_stats
func rtgo_stats(out *C.rt_out) C.int { return guard(out, func() C.int { return stats(out) }) }
