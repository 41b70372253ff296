/* The Lua 5.1 C API, resolved at open (GMod does not link it for modules).
 * Only Lua 5.1 functions, so that GMod's 32-bit LuaJIT 2.0.4 works too. */
#ifndef RT_LUA51_H
#define RT_LUA51_H

#include <stddef.h>

typedef struct lua_State lua_State;
typedef int (*lua_CFunction)(lua_State *L);

#define LUA_REGISTRYINDEX (-10000)
#define LUA_GLOBALSINDEX (-10002)
#define lua_upvalueindex(i) (LUA_GLOBALSINDEX - (i))
#define LUA_MULTRET (-1)
#define LUA_TNONE (-1)
#define LUA_TNIL 0
#define LUA_TBOOLEAN 1
#define LUA_TLIGHTUSERDATA 2
#define LUA_TNUMBER 3
#define LUA_TSTRING 4
#define LUA_TTABLE 5
#define LUA_TFUNCTION 6
#define LUA_TUSERDATA 7

struct rt_lua {
	int (*gettop)(lua_State *);
	void (*settop)(lua_State *, int);
	void (*pushvalue)(lua_State *, int);
	void (*insert)(lua_State *, int);
	void (*replace)(lua_State *, int);
	int (*type)(lua_State *, int);
	const char *(*typename)(lua_State *, int);
	const char *(*tolstring)(lua_State *, int, size_t *);
	double (*tonumber)(lua_State *, int);
	int (*toboolean)(lua_State *, int);
	void *(*touserdata)(lua_State *, int);
	const void *(*topointer)(lua_State *, int);
	void (*pushnil)(lua_State *);
	void (*pushnumber)(lua_State *, double);
	void (*pushlstring)(lua_State *, const char *, size_t);
	void (*pushstring)(lua_State *, const char *);
	void (*pushboolean)(lua_State *, int);
	void (*pushcclosure)(lua_State *, lua_CFunction, int);
	void (*pushlightuserdata)(lua_State *, void *);
	void (*createtable)(lua_State *, int, int);
	void (*getfield)(lua_State *, int, const char *);
	void (*setfield)(lua_State *, int, const char *);
	void (*rawget)(lua_State *, int);
	void (*rawset)(lua_State *, int);
	void (*rawgeti)(lua_State *, int, int);
	void (*rawseti)(lua_State *, int, int);
	int (*next)(lua_State *, int);
	int (*getmetatable)(lua_State *, int);
	int (*pcall)(lua_State *, int, int, int);
	int (*cpcall)(lua_State *, lua_CFunction, void *);
	int (*error)(lua_State *);
	int (*checkstack)(lua_State *, int);
};

extern struct rt_lua lua;

/* rt_resolve fills lua once; it returns the first missing symbol, or NULL. */
const char *rt_resolve(void);

#endif
