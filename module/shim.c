/* The Lua C API side of gmsv_realtime; see shim.h for the rules. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#define RT_EXPORT __declspec(dllexport)
#else
#include <dlfcn.h>
#define RT_EXPORT __attribute__((visibility("default")))
#endif

#include "shim.h"
#include "_cgo_export.h"

/* ---- The Lua 5.1 C API, resolved at open ------------------------------ */

typedef struct lua_State lua_State;
typedef int (*lua_CFunction)(lua_State *L);

#define LUA_REGISTRYINDEX (-10000)
#define LUA_GLOBALSINDEX (-10002)
#define lua_upvalueindex(i) (LUA_GLOBALSINDEX - (i))
#define LUA_NOREF (-2)
#define LUA_TNONE (-1)
#define LUA_TNIL 0
#define LUA_TBOOLEAN 1
#define LUA_TLIGHTUSERDATA 2
#define LUA_TNUMBER 3
#define LUA_TSTRING 4
#define LUA_TTABLE 5
#define LUA_TFUNCTION 6
#define LUA_TUSERDATA 7

static struct {
	int (*gettop)(lua_State *);
	void (*settop)(lua_State *, int);
	void (*pushvalue)(lua_State *, int);
	void (*insert)(lua_State *, int);
	int (*type)(lua_State *, int);
	const char *(*typename)(lua_State *, int);
	const char *(*tolstring)(lua_State *, int, size_t *);
	double (*tonumber)(lua_State *, int);
	int (*toboolean)(lua_State *, int);
	void (*pushnil)(lua_State *);
	void (*pushnumber)(lua_State *, double);
	void (*pushlstring)(lua_State *, const char *, size_t);
	void (*pushstring)(lua_State *, const char *);
	void (*pushboolean)(lua_State *, int);
	void (*pushcclosure)(lua_State *, lua_CFunction, int);
	void (*createtable)(lua_State *, int, int);
	void (*getfield)(lua_State *, int, const char *);
	void (*setfield)(lua_State *, int, const char *);
	void (*rawset)(lua_State *, int);
	void (*rawgeti)(lua_State *, int, int);
	void (*rawseti)(lua_State *, int, int);
	int (*next)(lua_State *, int);
	int (*getmetatable)(lua_State *, int);
	int (*pcall)(lua_State *, int, int, int);
	int (*error)(lua_State *);
	int (*checkstack)(lua_State *, int);
	int (*ref)(lua_State *, int);
	void (*unref)(lua_State *, int, int);
} lua;

static const struct {
	const char *name;
	size_t offset;
} lua_symbols[] = {
#define SYM(field, name) {name, offsetof(__typeof__(lua), field)}
	SYM(gettop, "lua_gettop"), SYM(settop, "lua_settop"), SYM(pushvalue, "lua_pushvalue"),
	SYM(insert, "lua_insert"), SYM(type, "lua_type"), SYM(typename, "lua_typename"),
	SYM(tolstring, "lua_tolstring"), SYM(tonumber, "lua_tonumber"), SYM(toboolean, "lua_toboolean"),
	SYM(pushnil, "lua_pushnil"), SYM(pushnumber, "lua_pushnumber"), SYM(pushlstring, "lua_pushlstring"),
	SYM(pushstring, "lua_pushstring"), SYM(pushboolean, "lua_pushboolean"),
	SYM(pushcclosure, "lua_pushcclosure"), SYM(createtable, "lua_createtable"),
	SYM(getfield, "lua_getfield"), SYM(setfield, "lua_setfield"), SYM(rawset, "lua_rawset"),
	SYM(rawgeti, "lua_rawgeti"), SYM(rawseti, "lua_rawseti"), SYM(next, "lua_next"),
	SYM(getmetatable, "lua_getmetatable"), SYM(pcall, "lua_pcall"), SYM(error, "lua_error"),
	SYM(checkstack, "lua_checkstack"), SYM(ref, "luaL_ref"), SYM(unref, "luaL_unref"),
#undef SYM
};

#ifdef _WIN32
static void *lookup(const char *name) {
	static const char *const dlls[] = {"lua_shared.dll", "lua_shared_srv.dll", "lua51.dll", "lua5.1.dll"};
	for (size_t i = 0; i < sizeof dlls / sizeof dlls[0]; i++) {
		HMODULE h = GetModuleHandleA(dlls[i]);
		if (h) {
			void *p = (void *)GetProcAddress(h, name);
			if (p)
				return p;
		}
	}
	return NULL;
}
#else
/* GMod loads lua_shared privately (RTLD_LOCAL), so the API may not be in
 * the global scope; the library is already loaded, so RTLD_NOLOAD finds it
 * by name without loading anything. */
static void *lookup(const char *name) {
	static const char *const libs[] = {
	    "garrysmod/bin/lua_shared_srv.so", "bin/linux64/lua_shared.so", "bin/linux32/lua_shared.so",
	    "garrysmod/bin/lua_shared.so",     "lua_shared_srv.so",         "lua_shared.so",
	};
	void *p = dlsym(RTLD_DEFAULT, name);
	for (size_t i = 0; !p && i < sizeof libs / sizeof libs[0]; i++) {
		void *h = dlopen(libs[i], RTLD_LAZY | RTLD_NOLOAD);
		if (h) {
			p = dlsym(h, name);
			dlclose(h);
		}
	}
	return p;
}
#endif

/* resolve fills lua; it returns the first missing symbol, or NULL. */
static const char *resolve(void) {
	static int done;
	if (done)
		return NULL;
	for (size_t i = 0; i < sizeof lua_symbols / sizeof lua_symbols[0]; i++) {
		void *p = lookup(lua_symbols[i].name);
		if (!p)
			return lua_symbols[i].name;
		memcpy((char *)&lua + lua_symbols[i].offset, &p, sizeof p);
	}
	done = 1;
	return NULL;
}

/* ---- Shared state ----------------------------------------------------- */

rt_out rt_result;
rt_batch rt_events;
rt_tape rt_args;
int64_t rt_pending_events __attribute__((aligned(8)));
int64_t rt_pending_logs __attribute__((aligned(8)));

static int64_t load64(int64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

int rt_reserve(rt_tape *t, uint32_t n, uint32_t b) {
	if (t->n + n > t->cap) {
		uint32_t cap = t->cap ? t->cap : 64;
		while (cap < t->n + n)
			cap *= 2;
		rt_node *p = realloc(t->nodes, (size_t)cap * sizeof *p);
		if (!p)
			return 0;
		t->nodes = p, t->cap = cap;
	}
	if (t->nbytes + b > t->bcap) {
		uint32_t cap = t->bcap ? t->bcap : 4096;
		while (cap < t->nbytes + b)
			cap *= 2;
		char *p = realloc(t->bytes, cap);
		if (!p)
			return 0;
		t->bytes = p, t->bcap = cap;
	}
	return 1;
}

int rt_reserve_refs(uint32_t n) {
	if (n > rt_result.refcap) {
		int32_t *p = realloc(rt_result.refs, (size_t)n * sizeof *p);
		if (!p)
			return 0;
		rt_result.refs = p, rt_result.refcap = n;
	}
	return 1;
}

int rt_reserve_events(uint32_t n) {
	if (n > rt_events.cap) {
		rt_event *p = realloc(rt_events.events, (size_t)n * sizeof *p);
		if (!p)
			return 0;
		rt_events.events = p, rt_events.cap = n;
	}
	return 1;
}

/* ---- Errors, the way Lua's own library words them --------------------- */

static int rt_raise(lua_State *L, const char *fmt, ...) {
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

static int typeerror(lua_State *L, int narg, const char *fn, const char *want) {
	char msg[128];
	snprintf(msg, sizeof msg, "%s expected, got %s", want, lua.typename(L, lua.type(L, narg)));
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

static void pushstr(lua_State *L, rt_str s) { lua.pushlstring(L, rt_result.tape.bytes + s.off, s.len); }

static void release_refs(lua_State *L) {
	for (uint32_t i = 0; i < rt_result.nrefs; i++)
		lua.unref(L, LUA_REGISTRYINDEX, rt_result.refs[i]);
	rt_result.nrefs = 0;
}

/* check turns a Go result code into Lua: RT_OK returns 0 for the caller to
 * push its results; RT_FAIL pushes false, err and returns 2; errors raise. */
static int check(lua_State *L, int code, const char *fn) {
	release_refs(L);
	switch (code) {
	case RT_OK:
		return 0;
	case RT_FAIL:
		lua.pushboolean(L, 0);
		pushstr(L, rt_result.str);
		return 2;
	case RT_ARGERR:
		lua.pushlstring(L, rt_result.tape.bytes + rt_result.str.off, rt_result.str.len);
		return argerror(L, rt_result.argn, fn, lua.tolstring(L, -1, NULL));
	default:
		pushstr(L, rt_result.str);
		return rt_raise(L, "realtime.%s: %s", fn, lua.tolstring(L, -1, NULL));
	}
}

/* ---- Lua values to a tape (rt_args) ----------------------------------- */

#define MAX_TABLE_DEPTH 64

static void tape_node(lua_State *L, uint32_t kind, double num, const char *s, size_t len) {
	if (len > UINT32_MAX / 2 || !rt_reserve(&rt_args, 1, (uint32_t)len))
		rt_raise(L, "realtime: out of memory");
	rt_node *n = &rt_args.nodes[rt_args.n++];
	n->kind = kind, n->num = num, n->off = rt_args.nbytes, n->len = (uint32_t)len;
	if (s) {
		memcpy(rt_args.bytes + rt_args.nbytes, s, len);
		rt_args.nbytes += (uint32_t)len;
	}
}

static void tape_cstr(lua_State *L, uint32_t kind, const char *s) { tape_node(L, kind, 0, s, strlen(s)); }

/* vector reads a Vector-like value's x, y, z (fields, or [1], [2], [3] of
 * a table) into v; 0 if it has none. */
static int vector(lua_State *L, int idx, double v[3]) {
	static const char *const keys[] = {"x", "y", "z"};
	int t = lua.type(L, idx);
	if (t == LUA_TUSERDATA) {
		if (!lua.getmetatable(L, idx)) /* indexing it would raise */
			return 0;
		lua.settop(L, -2);
	} else if (t != LUA_TTABLE) {
		return 0;
	}
	int ok = 1;
	for (int i = 0; i < 3; i++) {
		lua.getfield(L, idx, keys[i]);
		ok = ok && lua.type(L, -1) == LUA_TNUMBER;
		v[i] = lua.tonumber(L, -1);
		lua.settop(L, -2);
	}
	if (ok || t != LUA_TTABLE)
		return ok;
	ok = 1;
	for (int i = 0; i < 3; i++) {
		lua.rawgeti(L, idx, i + 1);
		ok = ok && lua.type(L, -1) == LUA_TNUMBER;
		v[i] = lua.tonumber(L, -1);
		lua.settop(L, -2);
	}
	return ok;
}

static void tape_vector(lua_State *L, const double v[3]) {
	tape_node(L, RTK_OBJECT, 0, NULL, 0);
	rt_args.nodes[rt_args.n - 1].len = 3;
	tape_cstr(L, RTK_STRING, "x");
	tape_node(L, RTK_NUMBER, v[0], NULL, 0);
	tape_cstr(L, RTK_STRING, "y");
	tape_node(L, RTK_NUMBER, v[1], NULL, 0);
	tape_cstr(L, RTK_STRING, "z");
	tape_node(L, RTK_NUMBER, v[2], NULL, 0);
}

static void tape_value(lua_State *L, int idx, int depth);

static void tape_table(lua_State *L, int idx, int depth) {
	if (depth >= MAX_TABLE_DEPTH) {
		tape_cstr(L, RTK_INVALID, "a table nested more than 64 levels deep (a cycle?)");
		return;
	}
	if (!lua.checkstack(L, 4))
		rt_raise(L, "realtime: Lua stack overflow");
	uint32_t at = rt_args.n, pairs = 0;
	tape_node(L, RTK_OBJECT, 0, NULL, 0);
	lua.pushnil(L);
	while (lua.next(L, idx)) {
		int kt = lua.type(L, -2);
		size_t len;
		if (kt == LUA_TSTRING) {
			const char *s = lua.tolstring(L, -2, &len);
			tape_node(L, RTK_STRING, 0, s, len);
		} else if (kt == LUA_TNUMBER) {
			tape_node(L, RTK_NUMBER, lua.tonumber(L, -2), NULL, 0);
		} else {
			char what[64];
			snprintf(what, sizeof what, "a %s key", lua.typename(L, kt));
			tape_cstr(L, RTK_INVALID, what);
		}
		tape_value(L, lua.gettop(L), depth + 1);
		lua.settop(L, -2);
		pairs++;
	}
	rt_args.nodes[at].len = pairs;
}

static void tape_value(lua_State *L, int idx, int depth) {
	size_t len;
	const char *s;
	double v[3];
	switch (lua.type(L, idx)) {
	case LUA_TNONE:
	case LUA_TNIL:
		tape_node(L, RTK_NULL, 0, NULL, 0);
		break;
	case LUA_TBOOLEAN:
		tape_node(L, lua.toboolean(L, idx) ? RTK_TRUE : RTK_FALSE, 0, NULL, 0);
		break;
	case LUA_TNUMBER:
		tape_node(L, RTK_NUMBER, lua.tonumber(L, idx), NULL, 0);
		break;
	case LUA_TSTRING:
		s = lua.tolstring(L, idx, &len);
		tape_node(L, RTK_STRING, 0, s, len);
		break;
	case LUA_TTABLE:
		tape_table(L, idx, depth);
		break;
	case LUA_TUSERDATA:
		if (vector(L, idx, v)) {
			tape_vector(L, v);
			break;
		}
		/* fall through */
	default: {
		char what[64];
		snprintf(what, sizeof what, "a %s", lua.typename(L, lua.type(L, idx)));
		tape_cstr(L, RTK_INVALID, what);
	}
	}
}

static void tape_reset(void) { rt_args.n = 0, rt_args.nbytes = 0; }

/* ---- A tape (rt_result.tape) to Lua values ---------------------------- */

static void push_node(lua_State *L, const rt_tape *t, uint32_t *i, int depth) {
	const rt_node *n = &t->nodes[(*i)++];
	switch (n->kind) {
	case RTK_FALSE:
	case RTK_TRUE:
		lua.pushboolean(L, n->kind == RTK_TRUE);
		return;
	case RTK_NUMBER:
		lua.pushnumber(L, n->num);
		return;
	case RTK_STRING:
		lua.pushlstring(L, t->bytes + n->off, n->len);
		return;
	case RTK_ARRAY:
	case RTK_OBJECT:
		break;
	default:
		lua.pushnil(L);
		return;
	}
	if (!lua.checkstack(L, 3))
		rt_raise(L, "realtime: Lua stack overflow (JSON nested %d deep)", depth);
	uint32_t len = n->len;
	if (n->kind == RTK_ARRAY) {
		lua.createtable(L, (int)len, 0);
		for (uint32_t k = 1; k <= len; k++) {
			if (t->nodes[*i].kind == RTK_NULL) { /* a hole, as util.JSONToTable leaves */
				(*i)++;
				continue;
			}
			push_node(L, t, i, depth + 1);
			lua.rawseti(L, -2, (int)k);
		}
		return;
	}
	lua.createtable(L, 0, (int)len);
	for (uint32_t k = 0; k < len; k++) {
		push_node(L, t, i, depth + 1);
		if (t->nodes[*i].kind == RTK_NULL) { /* null fields are absent */
			(*i)++;
			lua.settop(L, -2);
			continue;
		}
		push_node(L, t, i, depth + 1);
		lua.rawset(L, -3);
	}
}

static void push_tape(lua_State *L) {
	uint32_t i = 0;
	if (rt_result.tape.n == 0) {
		lua.pushnil(L);
		return;
	}
	push_node(L, &rt_result.tape, &i, 0);
}

/* ---- The realtime table ------------------------------------------------ */

static int l_publish(lua_State *L) {
	size_t chn, pn = 0;
	const char *ch = checkstring(L, 1, "Publish", &chn);
	const char *payload = NULL;
	int table = 0;
	switch (lua.type(L, 2)) {
	case LUA_TSTRING:
	case LUA_TNUMBER:
		payload = lua.tolstring(L, 2, &pn);
		break;
	case LUA_TTABLE:
	case LUA_TUSERDATA:
		tape_reset();
		tape_value(L, 2, 0);
		table = 1;
		break;
	default:
		typeerror(L, 2, "Publish", "string or table");
	}
	int n = check(L, rtgo_publish((char *)ch, chn, (char *)payload, pn, table), "Publish");
	if (n)
		return n;
	lua.pushboolean(L, 1);
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
	const struct game_event *ev = &game_events[(int)lua.tonumber(L, lua_upvalueindex(1))];
	tape_reset();
	tape_node(L, RTK_OBJECT, 0, NULL, 0);
	uint32_t nfields = 0;
	int arg = 1;
	for (int f = 0; f < 3 && ev->fields[f]; f++, arg++) {
		const char *ty = ev->types[f];
		int t = lua.type(L, arg);
		tape_cstr(L, RTK_STRING, ev->fields[f]);
		nfields++;
		if (t <= LUA_TNIL && ty[1] == '?') {
			tape_node(L, RTK_NULL, 0, NULL, 0);
			continue;
		}
		size_t len;
		const char *s;
		double v[3];
		switch (ty[0]) {
		case 's':
			s = checkstring(L, arg, ev->fn, &len);
			tape_node(L, RTK_STRING, 0, s, len);
			break;
		case 'n':
			tape_node(L, RTK_NUMBER, checknumber(L, arg, ev->fn), NULL, 0);
			break;
		case 'b':
			if (t != LUA_TBOOLEAN)
				typeerror(L, arg, ev->fn, "boolean");
			tape_node(L, lua.toboolean(L, arg) ? RTK_TRUE : RTK_FALSE, 0, NULL, 0);
			break;
		case 'p':
			if (t == LUA_TNUMBER) {
				for (int i = 0; i < 3; i++)
					v[i] = checknumber(L, arg + i, ev->fn);
				arg += 2;
			} else if (!vector(L, arg, v)) {
				typeerror(L, arg, ev->fn, "Vector, {x=, y=, z=}, {x, y, z} or three numbers");
			}
			tape_vector(L, v);
			break;
		default:
			if (t == LUA_TNONE)
				typeerror(L, arg, ev->fn, "value");
			tape_value(L, arg, 0);
		}
	}
	rt_args.nodes[0].len = nfields;
	int n = check(L, rtgo_game_event((char *)ev->fn, strlen(ev->fn)), ev->fn);
	if (n)
		return n;
	lua.pushboolean(L, 1);
	return 1;
}

/* ref_function stores the function at idx in the registry. */
static int ref_function(lua_State *L, int idx) {
	lua.pushvalue(L, idx);
	return lua.ref(L, LUA_REGISTRYINDEX);
}

static int on(lua_State *L, const char *fn, int exact) {
	size_t pn, idn = 0, dn = 0, rn = 0;
	const char *pat = checkstring(L, 1, fn, &pn);
	const char *id = "";
	int fidx = 2;
	if (lua.type(L, 2) != LUA_TFUNCTION) {
		id = optstring(L, 2, fn, &idn);
		fidx = 3;
	}
	checkfunction(L, fidx, fn);
	const char *decode = "", *rate = "";
	double burst = 0;
	int oidx = fidx + 1;
	switch (lua.type(L, oidx)) {
	case LUA_TNONE:
	case LUA_TNIL:
		break;
	case LUA_TTABLE:
		lua.getfield(L, oidx, "decode");
		if (lua.type(L, -1) > LUA_TNIL)
			decode = checkstring(L, lua.gettop(L), fn, &dn);
		lua.getfield(L, oidx, "json");
		if (lua.toboolean(L, -1))
			decode = "json", dn = 4;
		lua.getfield(L, oidx, "rate");
		if (lua.type(L, -1) > LUA_TNIL)
			rate = checkstring(L, lua.gettop(L), fn, &rn);
		lua.getfield(L, oidx, "burst");
		if (lua.type(L, -1) > LUA_TNIL)
			burst = checknumber(L, lua.gettop(L), fn);
		break;
	default:
		typeerror(L, oidx, fn, "table of options");
	}
	int ref = ref_function(L, fidx);
	int code = rtgo_on((char *)pat, pn, (char *)id, idn, ref, exact, (char *)decode, dn, (char *)rate, rn, (int)burst);
	if (code != RT_OK) {
		lua.unref(L, LUA_REGISTRYINDEX, ref);
		if (code == RT_ARGERR && rt_result.argn == 0) /* an option */
			rt_result.argn = oidx;
		else if (code == RT_ARGERR)
			rt_result.argn = 1;
	}
	int n = check(L, code, fn);
	if (n)
		return n;
	pushstr(L, rt_result.str);
	return 1;
}

static int l_on(lua_State *L) { return on(L, "On", 0); }
static int l_subscribe(lua_State *L) { return on(L, "Subscribe", 1); }
static int l_subscribe_pattern(lua_State *L) { return on(L, "SubscribePattern", 0); }

static int l_off(lua_State *L) {
	size_t pn = 0, idn;
	const char *pat = "", *id;
	if (lua.type(L, 2) > LUA_TNIL) {
		pat = checkstring(L, 1, "Off", &pn);
		id = checkstring(L, 2, "Off", &idn);
	} else {
		id = checkstring(L, 1, "Off", &idn);
	}
	int n = check(L, rtgo_off((char *)pat, pn, (char *)id, idn), "Off");
	if (n)
		return n;
	lua.pushboolean(L, rt_result.value);
	return 1;
}

static int l_handler(lua_State *L) {
	size_t len;
	const char *name = checkstring(L, 1, "Handler", &len);
	int ref = LUA_NOREF;
	if (lua.type(L, 2) > LUA_TNIL) {
		checkfunction(L, 2, "Handler");
		ref = ref_function(L, 2);
	}
	int code = rtgo_handler((char *)name, len, ref);
	if (code != RT_OK && ref != LUA_NOREF)
		lua.unref(L, LUA_REGISTRYINDEX, ref);
	return check(L, code, "Handler");
}

static int l_config(lua_State *L) {
	static const char *const keys[] = {"host", "port", "password", "timeout"};
	static const char *const types[] = {"string", "number", "string", "number"};
	tape_reset();
	if (lua.type(L, 1) == LUA_TTABLE) {
		tape_value(L, 1, 0);
	} else {
		tape_node(L, RTK_OBJECT, 0, NULL, 0);
		rt_args.nodes[0].len = 4;
		for (int i = 0; i < 4; i++) {
			int t = lua.type(L, i + 1);
			if (t > LUA_TNIL && t != (i % 2 ? LUA_TNUMBER : LUA_TSTRING) && !(i == 1 && t == LUA_TSTRING))
				typeerror(L, i + 1, "Config", i == 0 ? "table or string" : types[i]);
			tape_cstr(L, RTK_STRING, keys[i]);
			tape_value(L, i + 1, 0);
		}
	}
	int n = check(L, rtgo_configure(), "Config");
	if (n)
		return n;
	lua.pushboolean(L, 1);
	return 1;
}

static int l_connect(lua_State *L) {
	size_t len;
	const char *url = optstring(L, 1, "Connect", &len);
	int n = check(L, rtgo_connect((char *)url, len), "Connect");
	if (n)
		return n;
	lua.pushboolean(L, 1);
	return 1;
}

static int l_disconnect(lua_State *L) {
	check(L, rtgo_disconnect(), "Disconnect");
	lua.pushboolean(L, 1);
	return 1;
}

static int l_status(lua_State *L) {
	check(L, rtgo_status(), "Status");
	pushstr(L, rt_result.str);
	return 1;
}

static int l_is_connected(lua_State *L) {
	check(L, rtgo_status(), "IsConnected");
	const char *s = rt_result.tape.bytes + rt_result.str.off;
	lua.pushboolean(L, rt_result.str.len >= 5 && (!memcmp(s, "local", 5) || !memcmp(s, "connected", 9)));
	return 1;
}

static int l_reload(lua_State *L) {
	int n = check(L, rtgo_reload(), "Reload");
	if (n)
		return n;
	lua.pushboolean(L, 1);
	push_tape(L);
	return 2;
}

static int l_get_stats(lua_State *L) {
	check(L, rtgo_stats(), "GetStats");
	push_tape(L);
	return 1;
}

/* print_line prints one log line through ErrorNoHalt (warnings and errors,
 * when GMod has it) or print, under pcall: a broken print must not stop the
 * pump. */
static void print_line(lua_State *L, int level) {
	int top = lua.gettop(L);
	if (level >= 2) {
		lua.getfield(L, LUA_GLOBALSINDEX, "ErrorNoHalt");
		if (lua.type(L, -1) == LUA_TFUNCTION) {
			pushstr(L, rt_result.str);
			lua.pushstring(L, "\n");
			lua.pcall(L, 2, 0, 0);
			lua.settop(L, top);
			return;
		}
		lua.settop(L, top);
	}
	lua.getfield(L, LUA_GLOBALSINDEX, "print");
	if (lua.type(L, -1) == LUA_TFUNCTION) {
		pushstr(L, rt_result.str);
		lua.pcall(L, 1, 0, 0);
	} else {
		fprintf(stderr, "%.*s\n", (int)rt_result.str.len, rt_result.tape.bytes + rt_result.str.off);
	}
	lua.settop(L, top);
}

static void flush_logs(lua_State *L) {
	while (load64(&rt_pending_logs) > 0 && rtgo_take_log() == RT_OK && rt_result.value > 0)
		print_line(L, rt_result.value);
}

static void pushev(lua_State *L, rt_str s) { lua.pushlstring(L, rt_events.tape.bytes + s.off, s.len); }

/* push_event pushes the handler and its arguments; it returns the number
 * of arguments, or -1 (nothing pushed) for a status hook with no hook.Run. */
static int push_event(lua_State *L, const rt_event *ev) {
	int nargs = 0;
	if (ev->hook.len) {
		lua.getfield(L, LUA_GLOBALSINDEX, "hook");
		if (lua.type(L, -1) == LUA_TTABLE)
			lua.getfield(L, -1, "Run");
		else
			lua.pushnil(L);
		lua.insert(L, -2);
		lua.settop(L, -2); /* hook.Run, or nil: pcall then reports the call error */
		if (ev->status && lua.type(L, -1) != LUA_TFUNCTION) {
			lua.settop(L, -2);
			return -1;
		}
		pushev(L, ev->hook);
		nargs++;
	} else {
		lua.rawgeti(L, LUA_REGISTRYINDEX, ev->ref);
	}
	if (ev->status) { /* RealtimeConnected / RealtimeDisconnected(reason) */
		if (ev->reason.len) {
			pushev(L, ev->reason);
			nargs++;
		}
		return nargs;
	}
	pushev(L, ev->channel);
	if (ev->json) {
		uint32_t i = ev->node;
		push_node(L, &rt_events.tape, &i, 0);
	} else {
		pushev(L, ev->payload);
	}
	lua.createtable(L, 0, 3);
	pushev(L, ev->pattern);
	lua.setfield(L, -2, "pattern");
	pushev(L, ev->route);
	lua.setfield(L, -2, "route");
	lua.pushnumber(L, ev->received);
	lua.setfield(L, -2, "received");
	return nargs + 3;
}

static int processing;

static int l_process_events(lua_State *L) {
	int max = 0;
	if (lua.type(L, 1) > LUA_TNIL) {
		max = (int)checknumber(L, 1, "ProcessEvents");
		if (max < 1)
			return argerror(L, 1, "ProcessEvents", "at least 1 expected");
	}
	if ((load64(&rt_pending_events) == 0 && load64(&rt_pending_logs) == 0) || processing) {
		lua.pushnumber(L, 0);
		return 1;
	}
	processing = 1;
	int base = lua.gettop(L);
	lua.checkstack(L, 8);
	lua.getfield(L, LUA_GLOBALSINDEX, "debug");
	if (lua.type(L, -1) == LUA_TTABLE)
		lua.getfield(L, -1, "traceback");
	else
		lua.pushnil(L);
	lua.insert(L, -2);
	lua.settop(L, -2);
	int errfunc = lua.type(L, -1) == LUA_TFUNCTION ? base + 1 : 0;
	int dispatched = 0, first = 1, panicked = 0;
	while (load64(&rt_pending_events) > 0) {
		if (rtgo_next(first, max) != RT_OK) {
			panicked = 1;
			break;
		}
		first = 0;
		uint32_t n = rt_events.n;
		if (n == 0)
			break;
		for (uint32_t k = 0; k < n; k++) {
			const rt_event *ev = &rt_events.events[k];
			int nargs = push_event(L, ev);
			if (nargs < 0) /* a status hook without GMod's hook library */
				continue;
			if (!ev->status)
				dispatched++;
			if (lua.pcall(L, nargs, 0, errfunc) != 0) {
				size_t len;
				const char *msg = lua.tolstring(L, -1, &len);
				if (!msg)
					msg = "(error object is not a string)", len = strlen(msg);
				rtgo_handler_error((int)k, (char *)msg, len);
				lua.settop(L, -2);
			}
		}
	}
	flush_logs(L);
	processing = 0;
	lua.settop(L, base);
	if (panicked)
		return check(L, RT_PANIC, "ProcessEvents");
	lua.pushnumber(L, dispatched);
	return 1;
}

static const struct {
	const char *name;
	lua_CFunction fn;
} functions[] = {
    {"Publish", l_publish},
    {"On", l_on},
    {"Subscribe", l_subscribe},
    {"SubscribePattern", l_subscribe_pattern},
    {"Off", l_off},
    {"Handler", l_handler},
    {"Config", l_config},
    {"Connect", l_connect},
    {"Disconnect", l_disconnect},
    {"Status", l_status},
    {"IsConnected", l_is_connected},
    {"Reload", l_reload},
    {"GetStats", l_get_stats},
    {"ProcessEvents", l_process_events},
};

/* open builds the realtime table, sets the global and leaves the table on
 * the stack. */
static int open_module(lua_State *L) {
	const char *missing = resolve();
	if (missing) {
		/* Without the Lua API nothing can be raised or printed through Lua. */
		fprintf(stderr, "[realtime] cannot load: the Lua C API function %s was not found in the process "
		                "or in lua_shared; this module needs Garry's Mod, LuaJIT or Lua 5.1\n", missing);
		return 0;
	}
	int code = rtgo_open();
	lua.createtable(L, 0, 24);
	for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
		lua.pushcclosure(L, functions[i].fn, 0);
		lua.setfield(L, -2, functions[i].name);
	}
	for (size_t i = 0; i < sizeof game_events / sizeof game_events[0]; i++) {
		lua.pushnumber(L, (double)i);
		lua.pushcclosure(L, l_game_event, 1);
		lua.setfield(L, -2, game_events[i].fn);
	}
	pushstr(L, rt_result.str);
	lua.setfield(L, -2, "Version");
	lua.pushvalue(L, -1);
	lua.setfield(L, LUA_GLOBALSINDEX, "realtime");
	(void)code;
	flush_logs(L); /* the config line, or why it is not connected */
	return 1;
}

RT_EXPORT int gmod13_open(lua_State *L) {
	open_module(L);
	return 0;
}

RT_EXPORT int luaopen_realtime(lua_State *L) { return open_module(L); }

/* gmod13_close runs inside the map change: it forgets the state's
 * references and returns at once. It prints nothing (Msg crashes here). */
RT_EXPORT int gmod13_close(lua_State *L) {
	(void)L;
	rtgo_close();
	return 0;
}
