/* The realtime.* functions and the pump; see shim.h for the rules. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _WIN32
#include <windows.h>
#define RT_EXPORT __declspec(dllexport)
#else
#define RT_EXPORT __attribute__((visibility("default")))
#endif

#include "tape.h"
#include "_cgo_export.h"

/* ---- Shared state ----------------------------------------------------- */

rt_ring rt_events;
rt_frames rt_frame_stats;
int64_t rt_pending_events __attribute__((aligned(8)));
int64_t rt_pending_logs __attribute__((aligned(8)));
int64_t rt_budget_ns;
int64_t rt_max_per_frame;
int32_t rt_need_begin;

static int64_t load64(int64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

int rt_reserve_events(rt_batch *b, uint32_t n) {
	if (n > b->cap) {
		rt_event *p = realloc(b->events, (size_t)n * sizeof *p);
		if (!p)
			return 0;
		b->events = p, b->cap = n;
	}
	return 1;
}

/* ---- The ring's wake-up --------------------------------------------------
 * Go's feeder sleeps (rt_ring_arm, then a wait) until the pump has started
 * wake_at events in all (room in the ring) or used a slot (to free); the pump
 * checks after each event whether it sleeps and is due (a store and a
 * load). */
#ifdef _WIN32
static HANDLE ring_sem;
static void sem_up(void) { ReleaseSemaphore(ring_sem, 1, NULL); }
static void sem_down(void) { WaitForSingleObject(ring_sem, INFINITE); }
int rt_ring_init(int unused) {
	(void)unused;
	ring_sem = CreateSemaphoreA(NULL, 0, 0x7fffffff, NULL);
	return ring_sem != NULL;
}
#else
/* On Linux the feeder waits in Go, on an eventfd that Go's netpoller
 * watches (rt_ring_arm, then a read in ring_linux.go), not in C: a
 * goroutine blocked in a C call keeps its P in a syscall state, and each
 * time Go's sysmon takes such a P back (after 10 ms) it starts polling
 * again every 20 µs, which at a 66-tick pump was about 4 wake-ups of the
 * process per event at 1,000 events/s. */
#include <sys/eventfd.h>
#include <unistd.h>
static int ring_fd = -1;
static void sem_up(void) {
	uint64_t one = 1;
	ssize_t r = write(ring_fd, &one, sizeof one); /* cannot fail: one post per arm, far below the counter's limit */
	(void)r;
}
int rt_ring_init(int unused) {
	(void)unused;
	ring_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return ring_fd >= 0;
}
int rt_ring_fd(void) { return ring_fd; }
#endif

static int32_t feeder_waits;
static uint64_t wake_at __attribute__((aligned(8)));

/* any_used tells whether the pump has given back a slot that Go has not
 * freed yet. */
static int any_used(void) {
	for (int i = 0; i < RT_SLOTS; i++)
		if (__atomic_load_n(&rt_events.slots[i].state, __ATOMIC_SEQ_CST) == RT_SLOT_USED)
			return 1;
	return 0;
}

int rt_ring_arm(uint64_t until) {
	__atomic_store_n(&wake_at, until, __ATOMIC_SEQ_CST);
	__atomic_store_n(&feeder_waits, 1, __ATOMIC_SEQ_CST);
	/* A slot the pump gave back before feeder_waits was set, after Go last
	 * looked, had no one to wake: the room it makes (its bytes, the slot)
	 * would wait for the next event queued. */
	if ((__atomic_load_n(&rt_events.consumed, __ATOMIC_SEQ_CST) >= until || any_used()) &&
	    __atomic_exchange_n(&feeder_waits, 0, __ATOMIC_SEQ_CST))
		return 1; /* due already, and the pump has not posted */
	return 0;
}

#ifdef _WIN32
void rt_ring_wait(uint64_t until) {
	if (!rt_ring_arm(until))
		sem_down();
}
#endif

/* wake_if_due wakes the feeder if it sleeps and the pump has started
 * the events it waits for. */
static void wake_if_due(uint64_t c) {
	if (__atomic_load_n(&feeder_waits, __ATOMIC_RELAXED) && c >= __atomic_load_n(&wake_at, __ATOMIC_RELAXED) &&
	    __atomic_exchange_n(&feeder_waits, 0, __ATOMIC_SEQ_CST))
		sem_up();
}

/* consume counts one more event started, and wakes the feeder if due. The
 * count is stored with release, not a full barrier (an x86 store that
 * need not wait for the feeder's reading core to give the line back), so
 * the pump may miss a feeder that has just gone to sleep: the next event
 * sees it, and after the last one of a call consumed_fence does. */
static void consume(void) {
	uint64_t c = rt_events.consumed + 1;
	__atomic_store_n(&rt_events.consumed, c, __ATOMIC_RELEASE);
	wake_if_due(c);
}

/* consumed_fence ends a pump's run of consume calls: with the full
 * barrier, either the feeder saw the last count before it slept
 * (rt_ring_arm stores feeder_waits, then loads consumed, both seq_cst),
 * or the pump sees it sleeping now. */
static void consumed_fence(void) {
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wake_if_due(rt_events.consumed);
}

static int slot_state(const rt_batch *b) { return __atomic_load_n(&b->state, __ATOMIC_ACQUIRE); }

/* ready_slot is the slot at head if it has an event to dispatch, or NULL;
 * sealed slots dispatched to their end go back to Go on the way. */
static rt_batch *ready_slot(void) {
	for (;;) {
		rt_batch *b = &rt_events.slots[rt_events.head % RT_SLOTS];
		int st = slot_state(b);
		if (st != RT_SLOT_OPEN && st != RT_SLOT_SEALED)
			return NULL;
		if (b->cur < __atomic_load_n(&b->n, __ATOMIC_ACQUIRE))
			return b;
		if (st == RT_SLOT_OPEN)
			return NULL;
		__atomic_store_n(&b->state, RT_SLOT_USED, __ATOMIC_SEQ_CST);
		rt_events.head++;
		if (__atomic_exchange_n(&feeder_waits, 0, __ATOMIC_SEQ_CST)) /* a slot to free */
			sem_up();
	}
}

static int64_t now_ns(void) {
#ifdef _WIN32
	static LARGE_INTEGER freq;
	LARGE_INTEGER c;
	if (!freq.QuadPart)
		QueryPerformanceFrequency(&freq);
	QueryPerformanceCounter(&c);
	return (int64_t)((double)c.QuadPart * 1e9 / (double)freq.QuadPart);
#else
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#endif
}

static int64_t unix_ns(void) {
#ifdef _WIN32
	FILETIME ft;
	GetSystemTimeAsFileTime(&ft);
	int64_t t = (int64_t)(((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime);
	return (t - 116444736000000000LL) * 100;
#else
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#endif
}

/* ---- Errors, the way Lua's own library words them --------------------- */

int rt_raise(lua_State *L, const char *fmt, ...) {
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	lua.pushstring(L, buf);
	return lua.error(L);
}

static int argerror(lua_State *L, int narg, const char *fn, const char *msg) {
	return rt_raise(L, "bad argument #%d to '%s' (%s)", narg, fn, msg);
}

static const char *type_name(lua_State *L, int narg) {
	int t = lua.type(L, narg);
	return t == LUA_TNONE ? "no value" : lua.typename(L, t);
}

static int typeerror(lua_State *L, int narg, const char *fn, const char *want) {
	char msg[160];
	snprintf(msg, sizeof msg, "%s expected, got %s", want, type_name(L, narg));
	return argerror(L, narg, fn, msg);
}

static const char *checkstring(lua_State *L, int narg, const char *fn, size_t *len) {
	int t = lua.type(L, narg);
	if (t != LUA_TSTRING && t != LUA_TNUMBER)
		typeerror(L, narg, fn, "string");
	return lua.tolstring(L, narg, len);
}

static const char *optstring(lua_State *L, int narg, const char *fn, size_t *len) {
	if (lua.type(L, narg) <= LUA_TNIL) {
		*len = 0;
		return "";
	}
	return checkstring(L, narg, fn, len);
}

static double checknumber(lua_State *L, int narg, const char *fn) {
	if (lua.type(L, narg) != LUA_TNUMBER)
		typeerror(L, narg, fn, "number");
	return lua.tonumber(L, narg);
}

static void checkfunction(lua_State *L, int narg, const char *fn) {
	if (lua.type(L, narg) != LUA_TFUNCTION)
		typeerror(L, narg, fn, "function");
}

/* error_text is the text of the error object at idx, without converting
 * it in place: lua_tolstring on a number allocates, and an allocation may
 * run a finalizer that raises. */
static const char *error_text(lua_State *L, int idx, char *buf, size_t size, size_t *len) {
	const char *msg;
	switch (lua.type(L, idx)) {
	case LUA_TSTRING:
		return lua.tolstring(L, idx, len);
	case LUA_TNUMBER:
		snprintf(buf, size, "%.14g", lua.tonumber(L, idx));
		msg = buf;
		break;
	default:
		msg = "(error object is not a string)";
	}
	*len = strlen(msg);
	return msg;
}

static void pushstr(lua_State *L, const rt_out *out, rt_str s) { lua.pushlstring(L, out->tape.bytes + s.off, s.len); }

/* check turns a Go result code into Lua: RT_OK returns 0 for the caller to
 * push its results; RT_FAIL pushes false, err and returns 2; errors raise. */
static int check(lua_State *L, const rt_out *out, int code, const char *fn) {
	switch (code) {
	case RT_OK:
		return 0;
	case RT_FAIL:
		lua.pushboolean(L, 0);
		pushstr(L, out, out->str);
		return 2;
	case RT_ARGERR:
		pushstr(L, out, out->str);
		return argerror(L, out->argn, fn, lua.tolstring(L, -1, NULL));
	default:
		pushstr(L, out, out->str);
		return rt_raise(L, "realtime.%s: %s", fn, lua.tolstring(L, -1, NULL));
	}
}

/* ---- Protected calls ---------------------------------------------------- */

/* The buffers of the last call's rt_out, kept for the next one: a call
 * that is not nested in another then allocates nothing (the main thread is
 * the only one that calls in). */
static rt_tape spare_args, spare_tape;

static void take_spare(rt_tape *t, rt_tape *spare) {
	*t = *spare;
	t->n = t->nbytes = t->full = 0;
	memset(spare, 0, sizeof *spare);
}

static void give_spare(rt_tape *t, rt_tape *spare) {
	if (!spare->nodes && !spare->bytes && t->cap <= 4096 && t->bcap <= (1u << 16)) {
		*spare = *t;
		memset(t, 0, sizeof *t);
		return;
	}
	rt_tape_free(t);
}

/* Each realtime.* function is an entry closure whose upvalue is its body.
 * entry runs the body under lua_pcall with an rt_out of its own as the last
 * argument, keeps the rt_out's buffers for the next call (or frees them),
 * and then returns the body's results or raises its error again. Whatever a
 * metamethod, a finalizer or an out of memory raises in the body, nothing
 * leaks and no C state is left behind. */
static int entry(lua_State *L) {
	rt_out out;
	memset(&out, 0, sizeof out);
	out.magic = RT_OUT_MAGIC;
	int top = lua.gettop(L);
	if (!lua.checkstack(L, 3))
		return rt_raise(L, "realtime: Lua stack overflow");
	lua.pushvalue(L, lua_upvalueindex(1));
	lua.insert(L, 1);
	lua.pushlightuserdata(L, &out);
	take_spare(&out.args, &spare_args);
	take_spare(&out.tape, &spare_tape);
	int code = lua.pcall(L, top + 1, LUA_MULTRET, 0);
	out.magic = 0;
	give_spare(&out.args, &spare_args);
	give_spare(&out.tape, &spare_tape);
	if (code != 0)
		return lua.error(L);
	return lua.gettop(L);
}

/* body_out takes the entry's rt_out off the top of the stack, leaving the
 * caller's arguments as they were. */
static rt_out *body_out(lua_State *L, uint32_t magic) {
	int top = lua.gettop(L);
	rt_out *out = top > 0 && lua.type(L, top) == LUA_TLIGHTUSERDATA ? lua.touserdata(L, top) : NULL;
	if (!out || out->magic != magic)
		rt_raise(L, "realtime: internal function called directly");
	lua.settop(L, top - 1);
	return out;
}

/* check_tables raises unless the body's handler tables are tables (a
 * script can replace a C closure's upvalues with debug.setupvalue). */
static void check_tables(lua_State *L) {
	if (lua.type(L, lua_upvalueindex(1)) != LUA_TTABLE || lua.type(L, lua_upvalueindex(2)) != LUA_TTABLE)
		rt_raise(L, "realtime: internal function tampered with (debug.setupvalue)");
}

/* ---- The realtime table ------------------------------------------------ */

/* The bodies' tables of handler functions: realtime.Handler's by name, and
 * realtime.On's by route name (two tables: a Handler name may be any
 * string, a route's name too). */
#define HANDLERS lua_upvalueindex(1)
#define ON_HANDLERS lua_upvalueindex(2)
#define GETINFO lua_upvalueindex(3) /* l_dispatch's: debug.getinfo at open, or nil */

/* payload_arg reads argument 2 of Publish or Append (fn): a string or
 * number into *payload, or a table (or userdata) onto out->args, when it
 * returns 1. Anything else raises. */
static int payload_arg(lua_State *L, rt_out *out, const char *fn, const char **payload, size_t *len) {
	switch (lua.type(L, 2)) {
	case LUA_TSTRING:
	case LUA_TNUMBER:
		*payload = lua.tolstring(L, 2, len);
		return 0;
	case LUA_TTABLE:
	case LUA_TUSERDATA:
		rt_tape_value(L, &out->args, 2);
		if (out->args.full)
			argerror(L, 2, fn, RT_TOO_LARGE);
		return 1;
	}
	typeerror(L, 2, fn, "string or table");
	return 0;
}

static int l_publish(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	size_t chn, pn = 0;
	const char *ch = checkstring(L, 1, "Publish", &chn);
	const char *payload = NULL;
	int table = payload_arg(L, out, "Publish", &payload, &pn);
	int n = check(L, out, rtgo_publish(out, (char *)ch, chn, (char *)payload, pn, table), "Publish");
	if (n)
		return n;
	lua.pushboolean(L, 1);
	return 1;
}

/* realtime.Append(stream, payload): payload as Publish's; returns the
 * entry's rt_id, or false, err. */
static int l_append(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	size_t sn, pn = 0;
	const char *st = checkstring(L, 1, "Append", &sn);
	const char *payload = NULL;
	int table = payload_arg(L, out, "Append", &payload, &pn);
	int n = check(L, out, rtgo_append(out, (char *)st, sn, (char *)payload, pn, table), "Append");
	if (n)
		return n;
	pushstr(L, out, out->str);
	return 1;
}

/* Game events: one function per event, its fields checked by type:
 * 's' string, 'n' number, 'b' boolean, 'p' position (Vector, {x=,y=,z=},
 * {x,y,z} or three numbers), 'v' any JSON value; '?' after one makes it
 * optional. */
static const struct game_event {
	const char *fn;
	const char *fields[3];
	const char *types[3];
} game_events[] = {
    {"PlayerSpawn", {"name", "team", "pos"}, {"s", "n", "p"}},
    {"PlayerDeath", {"victim", "attacker", "weapon"}, {"s", "s?", "s?"}},
    {"ChatMessage", {"player", "message", "team"}, {"s", "s", "b?"}},
    {"PlayerTakeDamage", {"victim", "damage", "attacker"}, {"s", "n", "s?"}},
    {"RoundStart", {"gamemode", "map", NULL}, {"s", "s?", NULL}},
    {"RoundEnd", {"winner_team", "score", NULL}, {"v", "v?", NULL}},
};

static int l_game_event(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	double which = lua.tonumber(L, lua_upvalueindex(1));
	if (!(which >= 0 && which < (double)(sizeof game_events / sizeof game_events[0])))
		rt_raise(L, "realtime: internal function tampered with (debug.setupvalue)");
	const struct game_event *ev = &game_events[(int)which];
	rt_tape *t = &out->args;
	rt_tape_node(L, t, RTK_OBJECT, 0, NULL, 0);
	uint32_t nfields = 0;
	int arg = 1;
	for (int f = 0; f < 3 && ev->fields[f]; f++, arg++) {
		const char *ty = ev->types[f];
		int ltype = lua.type(L, arg);
		rt_tape_cstr(L, t, RTK_STRING, ev->fields[f]);
		nfields++;
		if (ltype <= LUA_TNIL && ty[1] == '?') {
			rt_tape_node(L, t, RTK_NULL, 0, NULL, 0);
			continue;
		}
		size_t len;
		const char *s;
		double v[3];
		switch (ty[0]) {
		case 's':
			s = checkstring(L, arg, ev->fn, &len);
			rt_tape_node(L, t, RTK_STRING, 0, s, len);
			break;
		case 'n':
			rt_tape_node(L, t, RTK_NUMBER, checknumber(L, arg, ev->fn), NULL, 0);
			break;
		case 'b':
			if (ltype != LUA_TBOOLEAN)
				typeerror(L, arg, ev->fn, "boolean");
			rt_tape_node(L, t, lua.toboolean(L, arg) ? RTK_TRUE : RTK_FALSE, 0, NULL, 0);
			break;
		case 'p':
			if (ltype == LUA_TNUMBER) {
				for (int i = 0; i < 3; i++)
					v[i] = checknumber(L, arg + i, ev->fn);
				arg += 2;
			} else if (!rt_vector(L, arg, v)) {
				typeerror(L, arg, ev->fn, "Vector, {x=, y=, z=}, {x, y, z} or three numbers");
			}
			rt_tape_vector(L, t, v);
			break;
		default:
			if (ltype == LUA_TNONE)
				typeerror(L, arg, ev->fn, "value");
			rt_tape_value(L, t, arg);
		}
		if (t->full)
			return argerror(L, arg, ev->fn, RT_TOO_LARGE);
	}
	t->nodes[0].len = nfields;
	int n = check(L, out, rtgo_game_event(out, (char *)ev->fn, strlen(ev->fn)), ev->fn);
	if (n)
		return n;
	lua.pushboolean(L, 1);
	return 1;
}

/* option pushes the options table's field name (read raw) and checks its
 * type: nil, or want (a number is a string too). It returns the string ("",
 * or NULL for a number option that is nil); errors name the options
 * argument and the field. */
static const char *option(lua_State *L, int oidx, const char *fn, const char *name, int want, size_t *len) {
	lua.pushstring(L, name);
	lua.rawget(L, oidx);
	int t = lua.type(L, -1);
	if (t <= LUA_TNIL) {
		if (len)
			*len = 0;
		return want == LUA_TSTRING ? "" : NULL;
	}
	if (t != want && !(want == LUA_TSTRING && t == LUA_TNUMBER)) {
		char msg[160];
		snprintf(msg, sizeof msg, "%s: %s expected, got %s", name, lua.typename(L, want), lua.typename(L, t));
		argerror(L, oidx, fn, msg);
	}
	return want == LUA_TSTRING ? lua.tolstring(L, -1, len) : "";
}

/* stream_options are the keys realtime.Stream's options table may have:
 * any other is a mistake (a typo of one of these) and raises. */
static const char *const stream_options[] = {"group", "start", "decode", "max_deliveries", "claim_after", NULL};

/* check_stream_keys raises for a key of the options table at oidx that is
 * not a realtime.Stream option. The walk is raw and allocates nothing
 * until the error. */
static void check_stream_keys(lua_State *L, int oidx) {
	lua.pushnil(L);
	while (lua.next(L, oidx)) {
		lua.settop(L, -2);
		size_t len = 0;
		const char *key = lua.type(L, -1) == LUA_TSTRING ? lua.tolstring(L, -1, &len) : NULL;
		int known = 0;
		for (int i = 0; key && stream_options[i]; i++)
			known |= strlen(stream_options[i]) == len && !memcmp(stream_options[i], key, len);
		if (!known) {
			char msg[240];
			snprintf(msg, sizeof msg, "unknown option %s%.40s%s (the options are group, start, decode, max_deliveries and claim_after)",
			         key ? "\"" : "", key ? key : lua.typename(L, lua.type(L, -1)), key ? "\"" : " key");
			argerror(L, oidx, "Stream", msg);
		}
	}
}

static int on(lua_State *L, const char *fn, int exact, int stream) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	check_tables(L);
	size_t pn, idn = 0, dn = 0, rn = 0, gn = 0, sn = 0, cn = 0;
	const char *pat = checkstring(L, 1, fn, &pn);
	const char *id = "";
	int fidx = 2;
	int t2 = lua.type(L, 2);
	if (t2 != LUA_TFUNCTION && (lua.gettop(L) >= 3 || t2 == LUA_TSTRING || t2 == LUA_TNUMBER)) {
		id = optstring(L, 2, fn, &idn);
		fidx = 3;
	}
	checkfunction(L, fidx, fn);
	const char *decode = "", *rate = "", *group = "", *start = "", *claim = "";
	double burst = 0, max_deliveries = 0;
	int has_max = 0;
	int oidx = fidx + 1;
	switch (lua.type(L, oidx)) {
	case LUA_TNONE:
	case LUA_TNIL:
		break;
	case LUA_TTABLE:
		/* raw reads: an options table's metamethods are not ours to run */
		decode = option(L, oidx, fn, "decode", LUA_TSTRING, &dn);
		if (stream) {
			check_stream_keys(L, oidx);
			group = option(L, oidx, fn, "group", LUA_TSTRING, &gn);
			start = option(L, oidx, fn, "start", LUA_TSTRING, &sn);
			claim = option(L, oidx, fn, "claim_after", LUA_TSTRING, &cn);
			if (option(L, oidx, fn, "max_deliveries", LUA_TNUMBER, NULL))
				max_deliveries = lua.tonumber(L, -1), has_max = 1;
			break;
		}
		lua.pushstring(L, "json");
		lua.rawget(L, oidx);
		if (lua.toboolean(L, -1))
			decode = "json", dn = 4;
		rate = option(L, oidx, fn, "rate", LUA_TSTRING, &rn);
		if (option(L, oidx, fn, "burst", LUA_TNUMBER, NULL))
			burst = lua.tonumber(L, -1);
		break;
	default:
		typeerror(L, oidx, fn, "table of options");
	}
	/* The function goes into the table first, then Go registers the route,
	 * and nothing that allocates comes after: an allocation may run a
	 * finalizer that raises, and a raise must find both sides as they were
	 * or both changed. */
	int code = rtgo_on_name(out, (char *)pat, pn, (char *)id, idn, stream);
	if (code != RT_OK)
		return check(L, out, code, fn);
	pushstr(L, out, out->str);
	int idslot = lua.gettop(L);
	pushstr(L, out, out->name);
	int name = lua.gettop(L);
	lua.pushvalue(L, name);
	lua.rawget(L, ON_HANDLERS);
	int old = lua.gettop(L);
	lua.pushvalue(L, name);
	lua.pushvalue(L, fidx);
	lua.rawset(L, ON_HANDLERS);
	id = lua.tolstring(L, idslot, &idn);
	if (stream)
		code = rtgo_stream(out, (char *)pat, pn, (char *)id, idn, (char *)decode, dn, (char *)group, gn, (char *)start, sn,
		                   (char *)claim, cn, max_deliveries, has_max);
	else
		code = rtgo_on(out, (char *)pat, pn, (char *)id, idn, exact, (char *)decode, dn, (char *)rate, rn, burst);
	if (code != RT_OK) {
		lua.pushvalue(L, name); /* the key exists now: setting it allocates nothing */
		lua.pushvalue(L, old);
		lua.rawset(L, ON_HANDLERS);
		if (code == RT_ARGERR)
			out->argn = out->argn == 0 ? oidx : 1; /* 0: an option */
		return check(L, out, code, fn);
	}
	lua.pushvalue(L, idslot);
	return 1;
}

static int l_on(lua_State *L) { return on(L, "On", 0, 0); }
static int l_subscribe(lua_State *L) { return on(L, "Subscribe", 1, 0); }
static int l_subscribe_pattern(lua_State *L) { return on(L, "SubscribePattern", 0, 0); }
static int l_stream(lua_State *L) { return on(L, "Stream", 1, 1); }

/* removed reports whether the string on top of the stack is one of the
 * names in out->tape. */
static int removed(lua_State *L, const rt_out *out) {
	size_t len;
	const char *key = lua.tolstring(L, -1, &len);
	for (uint32_t i = 0; i < out->tape.n; i++) {
		const rt_node *n = &out->tape.nodes[i];
		if (n->len == len && !memcmp(out->tape.bytes + n->off, key, len))
			return 1;
	}
	return 0;
}

static int l_off(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	check_tables(L);
	size_t pn = 0, idn;
	const char *pat = "", *id;
	if (lua.gettop(L) >= 2) {
		pat = checkstring(L, 1, "Off", &pn);
		id = checkstring(L, 2, "Off", &idn);
	} else {
		id = checkstring(L, 1, "Off", &idn);
	}
	int n = check(L, out, rtgo_off(out, (char *)pat, pn, (char *)id, idn, lua.gettop(L) >= 2), "Off");
	if (n)
		return n;
	/* Go removed the routes out->tape names: their functions go, by a walk
	 * of the table that allocates nothing (a name pushed as a new string
	 * could run a raising finalizer, with Go's side done and ours not). */
	if (out->tape.n > 0) {
		lua.pushnil(L);
		while (lua.next(L, ON_HANDLERS)) {
			lua.settop(L, -2); /* the key */
			if (lua.type(L, -1) == LUA_TSTRING && removed(L, out)) {
				lua.pushvalue(L, -1);
				lua.pushnil(L);
				lua.rawset(L, ON_HANDLERS); /* an existing key: allowed while walking */
			}
		}
	}
	lua.pushboolean(L, out->tape.n > 0);
	return 1;
}

static int l_handler(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	check_tables(L);
	size_t len;
	const char *name = checkstring(L, 1, "Handler", &len);
	int has = lua.type(L, 2) > LUA_TNIL;
	if (has)
		checkfunction(L, 2, "Handler");
	/* the table first, then Go, as in On */
	lua.settop(L, 2);
	lua.pushlstring(L, name, len); /* 3 */
	lua.pushvalue(L, 3);
	lua.rawget(L, HANDLERS); /* 4: the old one */
	lua.pushvalue(L, 3);
	lua.pushvalue(L, 2);
	lua.rawset(L, HANDLERS);
	int code = rtgo_handler(out, (char *)name, len, has);
	if (code != RT_OK) {
		lua.pushvalue(L, 3);
		lua.pushvalue(L, 4);
		lua.rawset(L, HANDLERS);
		return check(L, out, code, "Handler");
	}
	return 0;
}

static int l_config(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	static const char *const keys[] = {"host", "port", "password", "timeout"};
	static const char *const types[] = {"string", "number", "string", "number"};
	rt_tape *t = &out->args;
	if (lua.type(L, 1) == LUA_TTABLE) {
		rt_tape_value(L, t, 1);
		if (t->full)
			return argerror(L, 1, "Config", RT_TOO_LARGE);
	} else {
		rt_tape_node(L, t, RTK_OBJECT, 0, NULL, 0);
		t->nodes[0].len = 4;
		for (int i = 0; i < 4; i++) {
			int ty = lua.type(L, i + 1);
			if (ty > LUA_TNIL && ty != (i % 2 ? LUA_TNUMBER : LUA_TSTRING) && !(i == 1 && ty == LUA_TSTRING))
				typeerror(L, i + 1, "Config", i == 0 ? "table or string" : types[i]);
			rt_tape_cstr(L, t, RTK_STRING, keys[i]);
			rt_tape_value(L, t, i + 1);
		}
	}
	int n = check(L, out, rtgo_configure(out), "Config");
	if (n)
		return n;
	lua.pushboolean(L, 1);
	return 1;
}

static int l_connect(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	size_t len;
	const char *url = optstring(L, 1, "Connect", &len);
	int n = check(L, out, rtgo_connect(out, (char *)url, len), "Connect");
	if (n)
		return n;
	lua.pushboolean(L, 1);
	return 1;
}

static int l_disconnect(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	check(L, out, rtgo_disconnect(out), "Disconnect");
	lua.pushboolean(L, 1);
	return 1;
}

static int l_status(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	check(L, out, rtgo_status(out), "Status");
	pushstr(L, out, out->str);
	return 1;
}

static int l_is_connected(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	check(L, out, rtgo_status(out), "IsConnected");
	lua.pushboolean(L, out->value);
	return 1;
}

static int l_reload(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	int n = check(L, out, rtgo_reload(out), "Reload");
	if (n)
		return n;
	lua.pushboolean(L, 1);
	uint32_t i = 0;
	rt_push_node(L, &out->tape, &i, 0);
	return 2;
}

static int l_get_stats(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	check(L, out, rtgo_stats(out), "GetStats");
	uint32_t i = 0;
	rt_push_node(L, &out->tape, &i, 0);
	return 1;
}

/* ---- The pump ------------------------------------------------------------ */

/* print_line prints out->str through ErrorNoHalt (warnings and errors, when
 * GMod has it) or print, under pcall: a broken print must not stop the
 * pump. */
static void print_line(lua_State *L, const rt_out *out, int level) {
	int top = lua.gettop(L);
	if (level >= 2) {
		lua.getfield(L, LUA_GLOBALSINDEX, "ErrorNoHalt");
		if (lua.type(L, -1) == LUA_TFUNCTION) {
			pushstr(L, out, out->str);
			lua.pushstring(L, "\n");
			lua.pcall(L, 2, 0, 0);
			lua.settop(L, top);
			return;
		}
		lua.settop(L, top);
	}
	lua.getfield(L, LUA_GLOBALSINDEX, "print");
	if (lua.type(L, -1) == LUA_TFUNCTION) {
		pushstr(L, out, out->str);
		lua.pcall(L, 1, 0, 0);
	} else {
		fprintf(stderr, "%.*s\n", (int)out->str.len, out->tape.bytes + out->str.off);
	}
	lua.settop(L, top);
}

/* flush_logs prints the log lines waiting when it starts, no more: a print
 * (or ErrorNoHalt) that calls realtime.Reload adds a line each time. */
static void flush_logs(lua_State *L, rt_out *out) {
	for (int64_t n = load64(&rt_pending_logs); n > 0; n--) {
		if (rtgo_take_log(out) != RT_OK || out->value <= 0)
			return;
		print_line(L, out, out->value);
	}
}

/* l_flush_logs prints the log lines waiting; a body. */
static int l_flush_logs(lua_State *L) {
	rt_out *out = body_out(L, RT_OUT_MAGIC);
	flush_logs(L, out);
	return 0;
}

static void pushev(lua_State *L, const rt_batch *b, rt_str s) { lua.pushlstring(L, b->tape.bytes + s.off, s.len); }

/* Stack slots of l_dispatch: debug, its traceback, the meta table's keys,
 * interned once per call rather than once per event, and the last route
 * name, pattern and channel pushed. */
#define ERRFUNC 2
#define KEY_PATTERN 3
#define KEY_ROUTE 4
#define KEY_RECEIVED 5
#define LAST_ROUTE 6
#define LAST_PATTERN 7
#define LAST_CHANNEL 8
#define ARITY 9 /* handler function -> how many of its arguments it can see */
#define DISPATCH_BASE 9

static int same_str(rt_str a, rt_str b) { return a.off == b.off && a.len == b.len; }

/* A string of the slot being dispatched, kept on the stack: Go writes a
 * route name, pattern or channel equal to the previous event's only once
 * per slot (ring.go), so an equal offset is the same string and costs a
 * pushvalue instead of hashing and interning it again. head tells the
 * slot's use apart from a later use of the same slot. */
typedef struct last_str {
	const rt_batch *b;
	uint32_t head;
	rt_str s;
} last_str;

typedef struct last_strs {
	last_str route, pattern, channel;
} last_strs;

static void push_last(lua_State *L, const rt_batch *b, rt_str s, last_str *c, int idx) {
	if (c->b == b && c->head == rt_events.head && same_str(c->s, s)) {
		lua.pushvalue(L, idx);
		return;
	}
	pushev(L, b, s);
	lua.pushvalue(L, -1);
	lua.replace(L, idx);
	c->b = b, c->head = rt_events.head, c->s = s;
}

/* handler_args is how many of (channel, data, meta) the handler at fn can
 * see: a function that declares fewer parameters and no "..." never sees
 * the others, so none is made for it (building meta was most of a string
 * event's cost, and a payload is a new Lua string to hash and collect).
 * debug.getinfo's nparams and isvararg (LuaJIT; the getinfo of the module's
 * open) tell, once per function and ProcessEvents call (cached at ARITY,
 * which keeps the function alive, so the last one's address in *last
 * stays its own); without them, or on any error, all three are made. */
typedef struct arity {
	const void *fn;
	int n;
} arity;

static int handler_args(lua_State *L, int fn, arity *last) {
	const void *ptr = lua.topointer(L, fn);
	if (ptr && ptr == last->fn)
		return last->n;
	lua.pushvalue(L, fn);
	lua.rawget(L, ARITY);
	if (lua.type(L, -1) == LUA_TNUMBER) {
		int r = (int)lua.tonumber(L, -1);
		lua.settop(L, -2);
		last->fn = ptr, last->n = r;
		return r;
	}
	lua.settop(L, -2);
	int r = 3, top = lua.gettop(L);
	/* debug.getinfo as it was when the module opened (GETINFO), not the
	 * global: an addon may replace it later (anti-cheats detour it), and
	 * one that lies would take arguments from a handler that wants them;
	 * the result's fields are read raw, the call protected */
	if (lua.type(L, GETINFO) == LUA_TFUNCTION) {
		lua.pushvalue(L, GETINFO);
		lua.pushvalue(L, fn);
		lua.pushstring(L, "u");
		if (lua.pcall(L, 2, 1, 0) == 0 && lua.type(L, -1) == LUA_TTABLE) {
			lua.pushstring(L, "nparams");
			lua.rawget(L, -2);
			lua.pushstring(L, "isvararg");
			lua.rawget(L, -3);
			if (lua.type(L, -2) == LUA_TNUMBER && lua.type(L, -1) == LUA_TBOOLEAN && !lua.toboolean(L, -1)) {
				double np = lua.tonumber(L, -2);
				r = np >= 3 ? 3 : np >= 2 ? 2 : np >= 1 ? 1 : 0;
			}
		}
	}
	lua.settop(L, top);
	lua.pushvalue(L, fn);
	lua.pushnumber(L, r);
	lua.rawset(L, ARITY);
	last->fn = ptr, last->n = r;
	return r;
}

/* push_event pushes the route's name (or nil), then the handler and its
 * arguments; it returns the number of arguments, or -1 (the handler not
 * pushed) when there is nothing to call: no handler of that name, or a
 * status hook with no hook.Run. */
static int push_event(lua_State *L, rt_batch *b, rt_event *ev, last_strs *last, arity *ar) {
	if (ev->removed) { /* a registration made since under its route's name is another's */
		ev->outcome = RT_EV_NO_HANDLER;
		return -1;
	}
	int nargs = 0;
	int route = lua.gettop(L) + 1;
	if (ev->status)
		lua.pushnil(L);
	else
		push_last(L, b, ev->route, &last->route, LAST_ROUTE);
	if (ev->hook.len) {
		lua.getfield(L, LUA_GLOBALSINDEX, "hook");
		if (lua.type(L, -1) == LUA_TTABLE)
			lua.getfield(L, -1, "Run");
		else
			lua.pushnil(L);
		lua.insert(L, -2);
		lua.settop(L, -2); /* hook.Run, or nil: pcall then reports the call error */
		if (ev->status && lua.type(L, -1) != LUA_TFUNCTION)
			return -1;
		pushev(L, b, ev->hook);
		nargs++;
	} else {
		if (same_str(ev->handler, ev->route)) /* a realtime.On route */
			lua.pushvalue(L, route);
		else
			pushev(L, b, ev->handler);
		lua.rawget(L, ev->dynamic ? ON_HANDLERS : HANDLERS);
		if (lua.type(L, -1) != LUA_TFUNCTION) { /* removed by an earlier handler of this batch */
			ev->outcome = RT_EV_NO_HANDLER;
			return -1;
		}
	}
	if (ev->status) { /* RealtimeConnected / RealtimeDisconnected(reason) */
		if (ev->reason.len) {
			pushev(L, b, ev->reason);
			nargs++;
		}
		return nargs;
	}
	int want = ev->hook.len ? 3 : handler_args(L, route + 1, ar); /* hook.Run passes them on */
	if (want < 1)
		return nargs;
	push_last(L, b, ev->channel, &last->channel, LAST_CHANNEL);
	if (want < 2)
		return nargs + 1;
	if (ev->json) {
		uint32_t i = ev->node;
		rt_push_node(L, &b->tape, &i, 0);
	} else {
		pushev(L, b, ev->payload);
	}
	if (want < 3)
		return nargs + 2;
	lua.createtable(L, 0, ev->id.len ? 5 : 3);
	if (ev->id.len) { /* a stream entry */
		lua.pushstring(L, "id");
		pushev(L, b, ev->id);
		lua.rawset(L, -3);
		lua.pushstring(L, "deliveries");
		lua.pushnumber(L, ev->deliveries);
		lua.rawset(L, -3);
	}
	lua.pushvalue(L, KEY_PATTERN);
	push_last(L, b, ev->pattern, &last->pattern, LAST_PATTERN);
	lua.rawset(L, -3);
	lua.pushvalue(L, KEY_ROUTE);
	lua.pushvalue(L, route);
	lua.rawset(L, -3);
	lua.pushvalue(L, KEY_RECEIVED);
	lua.pushnumber(L, ev->received);
	lua.rawset(L, -3);
	return nargs + 3;
}

/* A ProcessEvents call. */
typedef struct pump {
	rt_out out;
	int64_t start, max;
	int64_t budget; /* rt_budget_ns when the call started (Go writes beside it) */
	int dispatched, started;
	int report;        /* an event failed or had no handler: Go hears of it before the call returns */
	int64_t spun;      /* ns spent waiting for events in transit */
	int64_t unix_off;  /* unix ns minus now_ns() */
	rt_event *building; /* the event whose call is being prepared, or NULL */
	uint32_t progress;  /* events started: to tell a stuck pump */
} pump;

/* set_building records the event whose call is being prepared or run:
 * its outcome is not known yet, and GetStats, called by its handler, must
 * not count it (rt_ring.busy). */
static void set_building(pump *p, rt_event *ev) {
	p->building = ev;
	rt_events.busy = ev != NULL;
}

/* set_failed records event ev's failure and its error text, for Go. */
/* ERR_MAX bounds the error text kept for the log: a handler raising a
 * 16 MB string held that much in C until the end of the ProcessEvents
 * call (and the log line printed it all). Cut on a UTF-8 character. */
#define ERR_MAX (64u << 10)
static const char err_cut[] = " ... (cut: the error text is over 64 KiB)";

static void set_failed(pump *p, rt_event *ev, int kind, const char *msg, size_t len) {
	p->report = 1;
	if (ev->failed)
		return;
	ev->failed = kind;
	size_t note = 0;
	if (len > ERR_MAX) {
		len = ERR_MAX;
		while (len > ERR_MAX - 3 && ((unsigned char)msg[len] & 0xC0) == 0x80) /* at most 3: binary stays binary */
			len--;
		note = sizeof err_cut - 1;
	}
	ev->err = malloc(len + note + 1);
	if (ev->err) {
		memcpy(ev->err, msg, len);
		memcpy(ev->err + len, err_cut, note);
		ev->errlen = (uint32_t)(len + note);
	}
}

/* wait_ready waits a little for events on their way into the ring (queued
 * in Go, or being moved by a goroutine), spinning: at most 50 us at a time
 * and 200 us in a call, within the budget. Never in Go. */
static rt_batch *wait_ready(pump *p) {
	consumed_fence(); /* the feeder may sleep on a wake-up consume missed */
	/* Nothing ready but events queued: the feeder may sleep waiting for an
	 * event the ring no longer holds (it armed for one more consumed after
	 * the pump took the last one, and the goroutine that queued saw the
	 * ring not yet empty and left the filling to it): wake it. */
	if (load64(&rt_pending_events) > 0 && __atomic_exchange_n(&feeder_waits, 0, __ATOMIC_SEQ_CST))
		sem_up();
	int64_t t0 = now_ns(), until = t0 + 50000;
	if (p->budget > 0 && p->start + p->budget < until)
		until = p->start + p->budget;
	rt_batch *b = NULL;
	int64_t t = t0;
	while (p->spun + (t - t0) < 200000 && t < until &&
	       (load64(&rt_pending_events) > 0 || __atomic_load_n(&rt_events.filling, __ATOMIC_ACQUIRE))) {
		if ((b = ready_slot()) != NULL)
			break;
		t = now_ns();
	}
	p->spun += t - t0;
	return b ? b : ready_slot();
}

/* l_dispatch dispatches events until the ring has none ready, the budget
 * is spent or max events were dispatched; a body, run under pcall by
 * l_process_events, which starts it again after an error outside a handler
 * (a finalizer, an __index, out of memory while building the arguments).
 * It never enters Go. */
static int l_dispatch(lua_State *L) {
	rt_out *out = body_out(L, RT_PUMP_MAGIC);
	check_tables(L);
	pump *p = (pump *)out;
	set_building(p, NULL);
	lua.settop(L, 0);
	if (!lua.checkstack(L, 24))
		return rt_raise(L, "realtime: Lua stack overflow");
	lua.getfield(L, LUA_GLOBALSINDEX, "debug");
	if (lua.type(L, -1) == LUA_TTABLE)
		lua.getfield(L, -1, "traceback");
	else
		lua.pushnil(L);
	int errfunc = lua.type(L, -1) == LUA_TFUNCTION ? ERRFUNC : 0;
	lua.pushstring(L, "pattern");
	lua.pushstring(L, "route");
	lua.pushstring(L, "received");
	lua.pushnil(L);
	lua.pushnil(L);
	lua.pushnil(L);
	lua.createtable(L, 0, 4); /* ARITY */
	last_strs last;
	memset(&last, 0, sizeof last);
	arity ar = {NULL, 0};
	for (;;) {
		int64_t t = now_ns();
		if ((p->max > 0 && p->dispatched >= p->max) ||
		    (p->started > 0 && p->budget > 0 && t - p->start >= p->budget))
			break;
		rt_batch *b = ready_slot();
		if (!b && (b = wait_ready(p)) != NULL)
			t = now_ns();
		if (!b)
			break;
		rt_event *ev = &b->events[b->cur++];
		ev->at = t + p->unix_off;
		consume();
		p->progress++;
		p->started++; /* status hooks too: they take time like handlers */
		/* An error from here to the end of the event, outside the
		 * handler's own pcall, is reported for ev by the caller. */
		set_building(p, ev);
		int nargs = push_event(L, b, ev, &last, &ar);
		if (nargs < 0) {
			if (ev->outcome == RT_EV_NO_HANDLER)
				p->report = 1;
			lua.settop(L, DISPATCH_BASE);
			set_building(p, NULL);
			continue;
		}
		if (!ev->status)
			p->dispatched++;
		if (ev->id.len) /* a stream entry: acknowledged (or not) before the call returns */
			p->report = 1;
		if (lua.pcall(L, nargs, 0, errfunc) != 0) {
			char buf[32];
			size_t len;
			const char *msg = error_text(L, -1, buf, sizeof buf, &len);
			set_failed(p, ev, RT_FAIL_HANDLER, msg, len);
		}
		lua.settop(L, DISPATCH_BASE);
		set_building(p, NULL);
	}
	ready_slot(); /* a sealed slot dispatched to its end goes back to Go now */
	return 0;
}

static int processing;

/* run calls the body closure at upvalue uv under pcall with p as its rt_out;
 * it returns the pcall's code, with the error (if any) on the stack. */
static int run(lua_State *L, int uv, pump *p) {
	lua.pushvalue(L, lua_upvalueindex(uv));
	lua.pushlightuserdata(L, &p->out);
	return lua.pcall(L, 1, 0, 0);
}

static int l_process_events(lua_State *L) {
	int64_t max = rt_max_per_frame;
	if (lua.type(L, 1) > LUA_TNIL) {
		double m = checknumber(L, 1, "ProcessEvents");
		if (!(m >= 1))
			return argerror(L, 1, "ProcessEvents", "at least 1 expected");
		max = m > 2147483647.0 ? 2147483647 : (int64_t)m;
	}
	if (processing ||
	    (!ready_slot() && load64(&rt_pending_events) == 0 && load64(&rt_pending_logs) == 0 && !rt_need_begin)) {
		lua.pushnumber(L, 0);
		return 1;
	}
	if (!lua.checkstack(L, 4))
		return rt_raise(L, "realtime: Lua stack overflow");
	pump p;
	memset(&p, 0, sizeof p);
	p.out.magic = RT_PUMP_MAGIC;
	p.start = now_ns(), p.max = max;
	p.unix_off = unix_ns() - p.start;
	int top = lua.gettop(L);
	processing = 1;
	if (rt_need_begin) { /* the first call of a Lua state */
		rt_need_begin = 0;
		rtgo_begin();
	}
	p.budget = rt_budget_ns;
	for (int errors = 0;; errors++) {
		uint32_t progress = p.progress;
		if (run(L, 1, &p) == 0)
			break;
		/* An error outside a handler: the event being built is reported
		 * as failed, and the pump goes on with the next one. */
		char buf[32];
		size_t len;
		const char *msg = error_text(L, -1, buf, sizeof buf, &len);
		if (p.building)
			set_failed(&p, p.building, RT_FAIL_BUILDING, msg, len);
		else
			rtgo_pump_error((char *)msg, len);
		set_building(&p, NULL);
		lua.settop(L, top);
		if (p.progress == progress || errors >= 1000)
			break; /* no event moved: it would fail again */
	}
	consumed_fence();
	if (p.report) /* counted and logged before the log lines are printed */
		rtgo_finish();
	p.out.magic = RT_OUT_MAGIC; /* the log lines need only an rt_out */
	if (run(L, 2, &p) != 0)    /* an error in print is not ours */
		lua.settop(L, top);
	processing = 0;
	p.out.magic = 0;
	rt_tape_free(&p.out.args);
	rt_tape_free(&p.out.tape);
	int64_t took = now_ns() - p.start;
	rt_frames *f = &rt_frame_stats;
	f->ns[f->n++ % RT_FRAMES] = took;
	if (took > f->max)
		f->max = took;
	if (rt_budget_ns > 0 && took > rt_budget_ns)
		f->over++;
	lua.pushnumber(L, p.dispatched);
	return 1;
}

/* ---- Open and close ------------------------------------------------------ */

typedef struct entry_fn {
	const char *name;
	lua_CFunction body;
	int handlers; /* the body needs the handler tables */
} entry_fn;

static const entry_fn functions[] = {
    {"Publish", l_publish, 0},
    {"Append", l_append, 0},
    {"On", l_on, 1},
    {"Subscribe", l_subscribe, 1},
    {"SubscribePattern", l_subscribe_pattern, 1},
    {"Stream", l_stream, 1},
    {"Off", l_off, 1},
    {"Handler", l_handler, 1},
    {"Config", l_config, 0},
    {"Connect", l_connect, 0},
    {"Disconnect", l_disconnect, 0},
    {"Status", l_status, 0},
    {"IsConnected", l_is_connected, 0},
    {"Reload", l_reload, 0},
    {"GetStats", l_get_stats, 0},
};

#ifdef _WIN32
/* pin keeps this DLL loaded for the life of the process, as -z nodelete
 * does on Linux: Go's threads must never outlive its code. */
static void pin(void) {
	HMODULE h;
	GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN, (LPCWSTR)(void *)&pin, &h);
}
#endif

/* l_open builds the realtime table and sets the global; a body run by
 * lua_cpcall, so that open fails with a Lua error and leaks nothing. */
/* push_getinfo pushes debug.getinfo, read raw, or nil. */
static void push_getinfo(lua_State *L) {
	lua.pushstring(L, "debug");
	lua.rawget(L, LUA_GLOBALSINDEX);
	if (lua.type(L, -1) == LUA_TTABLE) {
		lua.pushstring(L, "getinfo");
		lua.rawget(L, -2);
		lua.replace(L, -2);
	}
	if (lua.type(L, -1) != LUA_TFUNCTION) {
		lua.settop(L, -2);
		lua.pushnil(L);
	}
}

/* open_key's address is the registry key of the realtime table that a
 * state's open made: a second open in the same state (the module required
 * again after package.loaded.realtime = nil) gives that table back, with
 * its handlers, as require does a module already loaded, instead of
 * starting the state over with none. A new state has a registry of its own. */
static const char open_key;

static int l_open(lua_State *L) {
	rt_out *out = lua.touserdata(L, 1);
	lua.settop(L, 0);
	lua.pushlightuserdata(L, (void *)&open_key);
	lua.rawget(L, LUA_REGISTRYINDEX);
	if (lua.type(L, 1) == LUA_TTABLE) {
		lua.setfield(L, LUA_GLOBALSINDEX, "realtime");
		return 0;
	}
	lua.settop(L, 0);
	/* processing stays as it is: an open from inside a handler (the module
	 * required again after package.loaded.realtime = nil) must not let a
	 * ProcessEvents call start a pump inside the running one. A state
	 * that ends ends its pump with it (gmod13_close clears the flag). */
	int code = rtgo_open(out);
	if (code != RT_OK)
		return check(L, out, code, "open");
	lua.createtable(L, 0, 24);
	lua.createtable(L, 0, 0); /* the handler tables, shared by the bodies */
	lua.createtable(L, 0, 0);
	for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
		if (functions[i].handlers) {
			lua.pushvalue(L, 2);
			lua.pushvalue(L, 3);
			lua.pushcclosure(L, functions[i].body, 2);
		} else {
			lua.pushcclosure(L, functions[i].body, 0);
		}
		lua.pushcclosure(L, entry, 1);
		lua.setfield(L, 1, functions[i].name);
	}
	for (size_t i = 0; i < sizeof game_events / sizeof game_events[0]; i++) {
		lua.pushnumber(L, (double)i);
		lua.pushcclosure(L, l_game_event, 1);
		lua.pushcclosure(L, entry, 1);
		lua.setfield(L, 1, game_events[i].fn);
	}
	lua.pushvalue(L, 2);
	lua.pushvalue(L, 3);
	push_getinfo(L);
	lua.pushcclosure(L, l_dispatch, 3);
	lua.pushcclosure(L, l_flush_logs, 0);
	lua.pushcclosure(L, l_process_events, 2);
	lua.setfield(L, 1, "ProcessEvents");
	pushstr(L, out, out->str);
	lua.setfield(L, 1, "Version");
	lua.pushlightuserdata(L, (void *)&open_key);
	lua.pushvalue(L, 1);
	lua.rawset(L, LUA_REGISTRYINDEX);
	lua.pushvalue(L, 1);
	lua.setfield(L, LUA_GLOBALSINDEX, "realtime");
	flush_logs(L, out); /* the config line, or why it is not connected */
	return 0;
}

static int open_module(lua_State *L) {
	const char *missing = rt_resolve();
	if (missing) {
		/* Without the Lua API nothing can be raised or printed through Lua. */
		fprintf(stderr, "[realtime] cannot load: the Lua C API function %s was not found in the process "
		                "or in lua_shared; this module needs Garry's Mod, LuaJIT or Lua 5.1\n", missing);
		return 0;
	}
#ifdef _WIN32
	pin();
#endif
	rt_out out;
	memset(&out, 0, sizeof out);
	out.magic = RT_OUT_MAGIC;
	int code = lua.cpcall(L, l_open, &out);
	rt_tape_free(&out.args);
	rt_tape_free(&out.tape);
	if (code != 0)
		return lua.error(L);
	lua.getfield(L, LUA_GLOBALSINDEX, "realtime");
	return 1;
}

RT_EXPORT int gmod13_open(lua_State *L) {
	open_module(L);
	return 0;
}

RT_EXPORT int luaopen_realtime(lua_State *L) { return open_module(L); }

/* gmod13_close runs inside the map change: it forgets the state and returns
 * at once. It prints nothing (Msg crashes here). */
RT_EXPORT int gmod13_close(lua_State *L) {
	(void)L;
	processing = 0;
	rtgo_close();
	return 0;
}
