package main

// emptyRing keeps the feeder of an earlier test's open out of the ring and
// empties it, for a test that fills it itself: the ring is the process's,
// and nothing in Go tests runs the pump to empty it.
func emptyRing() {
	feed.mod.Store(nil)
	feed.mu.Lock()
	defer feed.mu.Unlock()
	for i := range uint32(_Ciconst_RT_SLOTS) {
		b := slot(i)
		clear(feed.calls[i][:])
		feed.done[i], feed.bytes[i] = 0, 0
		b.n, b.cur, b.tape.n, b.tape.nbytes = 0, 0, 0, 0
		state(b).Store(_Ciconst_RT_SLOT_FREE)
	}
	feed.held, feed.tail, feed.carry = 0, 0, nil
	feed.carried.Store(false)
	_Cvar_rt_events.head = 0
	feed.published.Store(consumed())
}
