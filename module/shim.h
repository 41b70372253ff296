/* The C side of gmsv_realtime: what the Lua C API needs and Go cannot do.
 *
 * Go never calls Lua. Each Lua-facing function here checks its arguments,
 * calls one Go function with plain C values, and turns the result into Lua
 * values, errors included, after the Go frame has returned: a Lua error
 * (a longjmp or an unwind) never crosses Go.
 *
 * Values cross as tapes: a Lua table C walked for Go (rt_args), or a JSON
 * value, stats or a reload summary Go wrote for C (rt_result.tape). */
#ifndef RT_SHIM_H
#define RT_SHIM_H

#include <stddef.h>
#include <stdint.h>

/* Node kinds, as router.Kind numbers them. A Lua table in rt_args is an
 * RTK_OBJECT of key/value pairs; RTK_INVALID is a value JSON cannot carry, its
 * string says what it was. */
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
} rt_tape;

typedef struct rt_str {
	uint32_t off, len; /* in rt_result.tape.bytes */
} rt_str;

/* Result codes of the Go functions. */
enum {
	RT_OK = 0,
	RT_FAIL = 1,   /* return false, str */
	RT_ARGERR = 2, /* raise "bad argument #argn to 'fn' (str)" */
	RT_PANIC = 3   /* raise str: a Go panic, recovered */
};

/* What a Go call hands back. Strings are in tape.bytes. */
typedef struct rt_out {
	rt_tape tape;
	rt_str str;
	int32_t argn;  /* RT_ARGERR: the argument */
	int32_t value; /* a small result: Off's bool, a log line's level */
	int32_t *refs; /* registry references to release */
	uint32_t nrefs, refcap;
} rt_out;

/* One handler call of ProcessEvents. Strings and the JSON data are in the
 * batch's tape. */
typedef struct rt_event {
	int32_t ref;    /* the handler, or LUA_NOREF with hook set */
	int32_t json;   /* data is the tape from node, not the payload */
	int32_t status; /* a status hook: RealtimeConnected / RealtimeDisconnected */
	uint32_t node;
	double received; /* unix ms */
	rt_str channel, payload, pattern, route, hook, reason;
} rt_event;

/* The handler calls Go hands over at once: one Go call per batch, not per
 * event. A separate arena from rt_result, which the handlers' own calls into
 * the module reuse while the batch runs. */
typedef struct rt_batch {
	rt_tape tape;
	rt_event *events;
	uint32_t n, cap;
} rt_batch;

extern rt_out rt_result;
extern rt_batch rt_events;
extern rt_tape rt_args;
extern int64_t rt_pending_events; /* events queued, kept by Go */
extern int64_t rt_pending_logs;   /* log lines waiting, kept by Go */

/* rt_reserve makes room for n more nodes and b more bytes; 0 when out of
 * memory. */
int rt_reserve(rt_tape *t, uint32_t n, uint32_t b);
int rt_reserve_refs(uint32_t n);
int rt_reserve_events(uint32_t n);


#endif
