/* Lua values to tapes and back; shared by shim.c and tape.c. */
#ifndef RT_TAPE_H
#define RT_TAPE_H

#include "lua51.h"
#include "shim.h"

/* rt_raise raises a Lua error with a formatted message (shim.c). */
int rt_raise(lua_State *L, const char *fmt, ...);

/* rt_tape_node appends one node (and s's bytes). Past the bounds of a
 * walk it sets t->full instead, and the walk stops: the caller raises
 * RT_TOO_LARGE. */
void rt_tape_node(lua_State *L, rt_tape *t, uint32_t kind, double num, const char *s, size_t len);
void rt_tape_cstr(lua_State *L, rt_tape *t, uint32_t kind, const char *s);

/* rt_tape_value appends the Lua value at idx (an absolute index). Tables
 * become objects; a cycle or a value JSON cannot carry becomes an
 * RTK_INVALID node saying what it was; a table shared by several paths is
 * written on each, within the tape's bounds. It calls no metamethod except
 * a userdata's __index for a Vector's x, y, z. */
void rt_tape_value(lua_State *L, rt_tape *t, int idx);

/* rt_vector reads a Vector-like value's x, y, z (fields, or [1], [2], [3]
 * of a table, read raw) into v; 0 if it has none. */
int rt_vector(lua_State *L, int idx, double v[3]);
void rt_tape_vector(lua_State *L, rt_tape *t, const double v[3]);

/* rt_push_node pushes the value at node *i of t and moves *i past it. */
void rt_push_node(lua_State *L, const rt_tape *t, uint32_t *i, int depth);

void rt_tape_free(rt_tape *t);

/* The most a walk of one Lua value takes: a table that appears on several
 * paths is written on each, so these bounds keep a shared or exponential
 * table from freezing the server. */
#define RT_ARG_NODES 262144
#define RT_ARG_MIB 64
#define RT_STR_(x) #x
#define RT_STR(x) RT_STR_(x)
#define RT_TOO_LARGE                                                                                  \
	"the value is too large (more than " RT_STR(RT_ARG_NODES) " values or " RT_STR(RT_ARG_MIB) " MiB; " \
	"a table that appears several times counts each time)"

#endif
