/* Lua values to tapes (for Go) and tapes to Lua values; see tape.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tape.h"

/* How deep a Lua table may nest, and how much of it a walk takes (see
 * RT_TOO_LARGE). */
#define MAX_TABLE_DEPTH 64
#define MAX_ARG_NODES ((uint32_t)RT_ARG_NODES)
#define MAX_ARG_BYTES ((uint32_t)RT_ARG_MIB << 20)

/* The most any tape holds, so that its uint32 sizes never wrap. */
#define MAX_TAPE (1u << 30)

int rt_reserve(rt_tape *t, uint32_t n, uint32_t b) {
	uint64_t nodes = (uint64_t)t->n + n, bytes = (uint64_t)t->nbytes + b;
	if (nodes > MAX_TAPE || bytes > MAX_TAPE)
		return 0;
	if (nodes > t->cap) {
		uint64_t cap = t->cap ? t->cap : 64;
		while (cap < nodes)
			cap *= 2;
		rt_node *p = realloc(t->nodes, (size_t)cap * sizeof *p);
		if (!p)
			return 0;
		t->nodes = p, t->cap = (uint32_t)cap;
	}
	if (bytes > t->bcap) {
		uint64_t cap = t->bcap ? t->bcap : 4096;
		while (cap < bytes)
			cap *= 2;
		char *p = realloc(t->bytes, (size_t)cap);
		if (!p)
			return 0;
		t->bytes = p, t->bcap = (uint32_t)cap;
	}
	return 1;
}

void rt_tape_free(rt_tape *t) {
	free(t->nodes);
	free(t->bytes);
	memset(t, 0, sizeof *t);
}

void rt_tape_node(lua_State *L, rt_tape *t, uint32_t kind, double num, const char *s, size_t len) {
	if (t->full || t->n >= MAX_ARG_NODES || len > MAX_ARG_BYTES - t->nbytes) {
		t->full = 1;
		return;
	}
	if (!rt_reserve(t, 1, (uint32_t)len))
		rt_raise(L, "realtime: out of memory");
	rt_node *n = &t->nodes[t->n++];
	n->kind = kind, n->num = num, n->off = t->nbytes, n->len = (uint32_t)len;
	if (s && len) { /* memcpy from or to NULL is undefined even for 0 bytes */
		memcpy(t->bytes + t->nbytes, s, len);
		t->nbytes += (uint32_t)len;
	}
}

void rt_tape_cstr(lua_State *L, rt_tape *t, uint32_t kind, const char *s) { rt_tape_node(L, t, kind, 0, s, strlen(s)); }

int rt_vector(lua_State *L, int idx, double v[3]) {
	static const char *const keys[] = {"x", "y", "z"};
	int t = lua.type(L, idx);
	if (!lua.checkstack(L, 3))
		rt_raise(L, "realtime: Lua stack overflow");
	if (t == LUA_TUSERDATA) {
		if (!lua.getmetatable(L, idx)) /* indexing it would raise */
			return 0;
		lua.pushstring(L, "__index");
		lua.rawget(L, -2);
		int indexable = lua.type(L, -1) > LUA_TNIL;
		lua.settop(L, -3);
		if (!indexable)
			return 0;
	} else if (t != LUA_TTABLE) {
		return 0;
	}
	int ok = 1;
	for (int i = 0; i < 3 && ok; i++) {
		if (t == LUA_TTABLE) {
			lua.pushstring(L, keys[i]);
			lua.rawget(L, idx);
		} else {
			lua.getfield(L, idx, keys[i]); /* a Vector's __index */
		}
		ok = lua.type(L, -1) == LUA_TNUMBER;
		v[i] = lua.tonumber(L, -1);
		lua.settop(L, -2);
	}
	if (ok || t != LUA_TTABLE)
		return ok;
	ok = 1;
	for (int i = 0; i < 3 && ok; i++) {
		lua.rawgeti(L, idx, i + 1);
		ok = lua.type(L, -1) == LUA_TNUMBER;
		v[i] = lua.tonumber(L, -1);
		lua.settop(L, -2);
	}
	return ok;
}

void rt_tape_vector(lua_State *L, rt_tape *t, const double v[3]) {
	rt_tape_node(L, t, RTK_OBJECT, 0, NULL, 0);
	if (t->full)
		return;
	t->nodes[t->n - 1].len = 3;
	rt_tape_cstr(L, t, RTK_STRING, "x");
	rt_tape_node(L, t, RTK_NUMBER, v[0], NULL, 0);
	rt_tape_cstr(L, t, RTK_STRING, "y");
	rt_tape_node(L, t, RTK_NUMBER, v[1], NULL, 0);
	rt_tape_cstr(L, t, RTK_STRING, "z");
	rt_tape_node(L, t, RTK_NUMBER, v[2], NULL, 0);
}

/* A walk: the tables on the path from the root, to tell a cycle from a
 * table met again on another path. */
typedef struct walk {
	lua_State *L;
	rt_tape *t;
	const void *path[MAX_TABLE_DEPTH];
	int depth;
} walk;

static void walk_value(walk *w, int idx);

static void walk_table(walk *w, int idx) {
	lua_State *L = w->L;
	const void *p = lua.topointer(L, idx);
	for (int d = 0; d < w->depth; d++) {
		if (w->path[d] == p) {
			rt_tape_cstr(L, w->t, RTK_INVALID, "a table that contains itself (a cycle)");
			return;
		}
	}
	if (w->depth >= MAX_TABLE_DEPTH) {
		rt_tape_cstr(L, w->t, RTK_INVALID, "a table nested more than 64 levels deep");
		return;
	}
	if (!lua.checkstack(L, 4))
		rt_raise(L, "realtime: Lua stack overflow");
	w->path[w->depth++] = p;
	uint32_t at = w->t->n, pairs = 0;
	int top = lua.gettop(L);
	rt_tape_node(L, w->t, RTK_OBJECT, 0, NULL, 0);
	lua.pushnil(L);
	while (!w->t->full && lua.next(L, idx)) {
		int kt = lua.type(L, -2);
		size_t len;
		if (kt == LUA_TSTRING) {
			const char *s = lua.tolstring(L, -2, &len);
			rt_tape_node(L, w->t, RTK_STRING, 0, s, len);
		} else if (kt == LUA_TNUMBER) {
			rt_tape_node(L, w->t, RTK_NUMBER, lua.tonumber(L, -2), NULL, 0);
		} else {
			char what[64];
			snprintf(what, sizeof what, "a %s key", lua.typename(L, kt));
			rt_tape_cstr(L, w->t, RTK_INVALID, what);
		}
		walk_value(w, lua.gettop(L));
		lua.settop(L, -2);
		pairs++;
	}
	if (w->t->full) {
		lua.settop(L, top); /* the key lua_next left */
	} else {
		w->t->nodes[at].len = pairs;
	}
	w->depth--;
}

static void walk_value(walk *w, int idx) {
	lua_State *L = w->L;
	size_t len;
	const char *s;
	double v[3];
	if (w->t->full)
		return;
	switch (lua.type(L, idx)) {
	case LUA_TNONE:
	case LUA_TNIL:
		rt_tape_node(L, w->t, RTK_NULL, 0, NULL, 0);
		return;
	case LUA_TBOOLEAN:
		rt_tape_node(L, w->t, lua.toboolean(L, idx) ? RTK_TRUE : RTK_FALSE, 0, NULL, 0);
		return;
	case LUA_TNUMBER:
		rt_tape_node(L, w->t, RTK_NUMBER, lua.tonumber(L, idx), NULL, 0);
		return;
	case LUA_TSTRING:
		s = lua.tolstring(L, idx, &len);
		rt_tape_node(L, w->t, RTK_STRING, 0, s, len);
		return;
	case LUA_TTABLE:
		walk_table(w, idx);
		return;
	case LUA_TUSERDATA:
		if (rt_vector(L, idx, v)) {
			rt_tape_vector(L, w->t, v);
			return;
		}
		break;
	}
	char what[64];
	snprintf(what, sizeof what, "a %s", lua.typename(L, lua.type(L, idx)));
	rt_tape_cstr(L, w->t, RTK_INVALID, what);
}

void rt_tape_value(lua_State *L, rt_tape *t, int idx) {
	walk w = {.L = L, .t = t};
	walk_value(&w, idx);
}

void rt_push_node(lua_State *L, const rt_tape *t, uint32_t *i, int depth) {
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
		lua.createtable(L, len > 1u << 20 ? 1 << 20 : (int)len, 0);
		for (uint32_t k = 1; k <= len; k++) {
			if (t->nodes[*i].kind == RTK_NULL) { /* a hole, as util.JSONToTable leaves */
				(*i)++;
				continue;
			}
			rt_push_node(L, t, i, depth + 1);
			lua.rawseti(L, -2, (int)k);
		}
		return;
	}
	lua.createtable(L, 0, len > 1u << 20 ? 1 << 20 : (int)len);
	for (uint32_t k = 0; k < len; k++) {
		rt_push_node(L, t, i, depth + 1);
		if (t->nodes[*i].kind == RTK_NULL) { /* null fields are absent */
			(*i)++;
			lua.settop(L, -2);
			continue;
		}
		rt_push_node(L, t, i, depth + 1);
		lua.rawset(L, -3);
	}
}
