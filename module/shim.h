/* The C side of gmsv_realtime: what the Lua C API needs and Go cannot do.
 *
 * Go never calls Lua. Each Lua-facing function here checks its arguments,
 * calls one Go function with plain C values, and turns the result into Lua
 * values, errors included, after the Go frame has returned: a Lua error
 * (a longjmp or an unwind) never crosses Go.
 *
 * Every call has its own rt_out, on the C stack of the Lua-facing function:
 * a handler, a __gc finalizer or an __index metamethod may call the module
 * again while an outer call is still reading its result. The Lua-facing
 * functions run their work under lua_pcall, so the buffers of an rt_out are
 * freed whatever Lua raises, and then the error goes on.
 *
 * Values cross as tapes: a Lua value C walked for Go (rt_out.args), or a
 * JSON value, stats or a reload summary Go wrote for C (rt_out.tape). */
#ifndef RT_SHIM_H
#define RT_SHIM_H

#include <stddef.h>
#include <stdint.h>

/* Node kinds. bridge.go checks at compile time that they are router.Kind's
 * numbers. A Lua table in rt_out.args is an RTK_OBJECT of key/value pairs;
 * RTK_INVALID is a value JSON cannot carry, its string says what it was. */
enum { RTK_NULL, RTK_FALSE, RTK_TRUE, RTK_NUMBER, RTK_STRING, RTK_ARRAY, RTK_OBJECT, RTK_INVALID = 100 };

typedef struct rt_node {
	double num;
	uint32_t off;  /* string: offset in the tape's bytes */
	uint32_t len;  /* string: bytes; array: elements; object: pairs */
	uint32_t kind;
	uint32_t pad;
} rt_node;

typedef struct rt_tape {
	rt_node *nodes;
	uint32_t n, cap;
	char *bytes;
	uint32_t nbytes, bcap;
	uint32_t full; /* a Lua value was too large for it: its walk stopped */
} rt_tape;

typedef struct rt_str {
	uint32_t off, len; /* in the tape's bytes */
} rt_str;

/* Result codes of the Go functions. */
enum {
	RT_OK = 0,
	RT_FAIL = 1,   /* return false, str */
	RT_ARGERR = 2, /* raise "bad argument #argn to 'fn' (str)" */
	RT_PANIC = 3   /* raise str: a Go panic, recovered */
};

/* One call's arguments and results. Strings are in tape.bytes. */
typedef struct rt_out {
	rt_tape args;   /* a Lua value, walked by C for Go */
	rt_tape tape;   /* Go's results: strings, a JSON-shaped value */
	rt_str str;     /* the message, id or version */
	rt_str name;    /* On: the route's name, its key in the handler table */
	int32_t argn;   /* RT_ARGERR: the argument */
	int32_t value;  /* a small result: a log line's level */
	uint32_t magic; /* RT_OUT_MAGIC while the call runs */
} rt_out;

#define RT_OUT_MAGIC 0x52544f55u
#define RT_PUMP_MAGIC 0x5254504du /* the rt_out that starts a ProcessEvents pump */

/* What became of an event, set by C, read by Go once the slot is used. */
enum { RT_EV_DONE = 0, RT_EV_NO_HANDLER = 1 };
/* An event's failure, set by C: its handler raised, or an error was raised
 * while its call was prepared (a finalizer, an __index, out of memory). */
enum { RT_FAIL_NONE = 0, RT_FAIL_HANDLER = 1, RT_FAIL_BUILDING = 2 };

/* One handler call of ProcessEvents. Strings and the JSON data are in the
 * slot's tape. */
typedef struct rt_event {
	int32_t json;    /* data is the tape from node, not the payload */
	int32_t status;  /* a status hook: RealtimeConnected / RealtimeDisconnected */
	int32_t outcome; /* RT_EV_*, set by C */
	int32_t dynamic; /* handler names a realtime.On route, not a realtime.Handler */
	int32_t failed;  /* RT_FAIL_*, set by C */
	int32_t removed; /* set by Go: its realtime.On/Stream registration was removed (Off, a map change's
	                  * sweep) before the pump reached it; no handler of the same route name is its */
	uint32_t node;
	double received; /* unix ms */
	rt_str channel, payload, pattern, route, reason;
	rt_str handler; /* the name in the handler table; len 0 with hook set */
	rt_str hook;    /* hook.Run this name instead */
	rt_str id;      /* a stream entry's id (meta.id), len 0 for a message */
	double deliveries; /* a stream entry's deliveries, this one included */
	int64_t at;     /* unix ns when the pump started it, set by C */
	char *err;      /* failed: the error's text (malloc'd by C, freed by Go), or NULL */
	uint32_t errlen;
} rt_event;

/* The ring between Go and the pump: RT_SLOTS slots of handler calls in C
 * memory, so that the pump never enters Go on its way. Go opens a free
 * slot and appends events to it off the main thread, publishing each by
 * storing n (release); the pump dispatches events[cur..n) of the slot at
 * head (acquire). When an event does not fit, Go seals the slot (no more
 * appends) and opens the next; the pump marks a sealed slot it has
 * dispatched to its end as used and moves on; Go counts the outcomes of a
 * used slot and frees it. state: FREE -> OPEN -> SEALED (Go) -> USED (C)
 * -> FREE (Go). Go never moves a slot's memory while n > 0 (its tape has
 * a fixed capacity once the first event is in). What a ProcessEvents call
 * leaves is dispatched first by the next one, also after a map change. */
#define RT_SLOTS 32
#define RT_SLOT_EVENTS 256
enum { RT_SLOT_FREE = 0, RT_SLOT_OPEN = 1, RT_SLOT_SEALED = 2, RT_SLOT_USED = 3 };
typedef struct rt_batch {
	rt_tape tape;
	rt_event *events;
	uint32_t n;      /* events published, stored by Go with release */
	uint32_t cap;    /* RT_SLOT_EVENTS once open */
	uint32_t cur;    /* the pump's next event */
	int32_t state;
} rt_batch;

/* head and busy, consumed, and filling each have a cache line of their
 * own: the pump writes busy twice and consumed once per event, and Go's
 * goroutines read consumed and write filling meanwhile; sharing a line,
 * every event of a drain would wait for the line to come back from the
 * other core. */
#define RT_LINE 64
typedef struct rt_ring {
	rt_batch slots[RT_SLOTS];
	uint32_t head __attribute__((aligned(RT_LINE))); /* the pump's slot; the main thread's */
	int32_t busy; /* the pump is in events[cur-1] of the head slot (its outcome unknown); the main thread's */
	uint64_t consumed __attribute__((aligned(RT_LINE))); /* events the pump has started, stored by C */
	int32_t filling __attribute__((aligned(RT_LINE)));   /* Go is moving events from its queue into the ring */
} rt_ring;

/* The pump's own time: each ProcessEvents call that had work, since Go
 * last read them (GetStats). ns keeps the last RT_FRAMES durations. */
#define RT_FRAMES 1024
typedef struct rt_frames {
	int64_t ns[RT_FRAMES];
	uint64_t n;    /* calls recorded */
	uint64_t over; /* calls that took longer than the budget */
	int64_t max;
} rt_frames;

extern rt_ring rt_events;
extern rt_frames rt_frame_stats;
extern int64_t rt_pending_events; /* events queued in Go, not yet in the ring, kept by Go */
extern int64_t rt_pending_logs;   /* log lines waiting, kept by Go */
extern int32_t rt_need_begin;     /* set by Go when a Lua state opens: the pump calls rtgo_begin once */
extern int64_t rt_budget_ns;      /* dispatch.budget, set by Go */
extern int64_t rt_max_per_frame;  /* dispatch.max_per_frame, 0: no limit, set by Go */

/* rt_reserve makes room for n more nodes and b more bytes; 0 when out of
 * memory or past RT_MAX_NODES / RT_MAX_BYTES. */
int rt_reserve(rt_tape *t, uint32_t n, uint32_t b);
int rt_reserve_events(rt_batch *b, uint32_t n);

/* rt_ring_init prepares the ring's wake-up. rt_ring_arm asks the pump to
 * wake Go's feeder once it has started until events in all (or given back
 * a slot): 1 when that is so already and nobody will post, else 0, and the
 * feeder waits for the post: in rt_ring_wait on Windows, on the eventfd
 * rt_ring_fd elsewhere (read by Go's netpoller). */
int rt_ring_init(int unused);
int rt_ring_arm(uint64_t until);
#ifdef _WIN32
void rt_ring_wait(uint64_t until);
#else
int rt_ring_fd(void);
#endif

#endif
