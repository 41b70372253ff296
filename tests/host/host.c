/* host: a small Garry's Mod stand-in for testing gmsv_realtime.
 *
 * It does to a binary module what a GMod dedicated server does: loads the
 * Lua runtime privately from bin/<arch>/lua_shared.so (dlopen RTLD_LOCAL, so
 * no lua_* symbol is in the global scope and the module must find the API in
 * lua_shared itself), makes a Lua state with a GMod-like environment
 * (tests/gmod/env.lua), loads garrysmod/lua/bin/gmsv_NAME_SUFFIX.dll through
 * require() and calls its gmod13_open, runs the .lua files of
 * garrysmod/lua/autorun/server, fires Initialize, then runs frames (env.lua's
 * __host_tick: Think, timers, Tick, in GMod's order unless -frame-order says
 * otherwise). A map change fires ShutDown, calls gmod13_close, closes the
 * state, dlcloses the module as GMod unloads binary modules, and starts over:
 * a module that is not pinned in memory (-z nodelete) dies there, and
 * HOST.Info().resident (modules still mapped after the unload) says so.
 * Built for LuaJIT 2.1 (64- and 32-bit) and PUC Lua 5.1 on Linux, and with
 * mingw-w64 for Windows (win64 and win32, run under Wine in the tests): there
 * the runtime is bin/win64/lua_shared.dll (garrysmod/bin/lua_shared.dll on
 * win32), loaded with LoadLibrary, and the module is unloaded with
 * FreeLibrary.
 *
 *   host [-root DIR] [-tickrate N] [-timeout SEC] [-map NAME]
 *        [-frame-order think-first|timers-first] -env env.lua script.lua
 *
 * $HOST_LUA_SHARED, a path under the root, loads the runtime from there
 * instead of srcds's place for it: a module must find the Lua API under
 * other names too (lua51.dll, plain LuaJIT's, on Windows).
 *
 * Run it from the server root, as srcds runs: the module looks for
 * bin/<arch>/lua_shared.so relative to the working directory.
 *
 * The script runs after autorun in every state; it finishes the run with
 * HOST.Exit(code) or by returning from a function given to HOST.Run. It
 * exits 1 on a Lua error in the script, on HOST.Fail (env.lua calls it on
 * an unexpected error in a frame), or on timeout. */
#define _GNU_SOURCE
#define _FILE_OFFSET_BITS 64 /* readdir on 32-bit with 64-bit inodes */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#include <winsock2.h> /* before windows.h */
#include <windows.h>
#include <psapi.h>
typedef SOCKET sock_t;
#else
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
typedef int sock_t;
#define INVALID_SOCKET (-1)
#define closesocket close
#endif

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

/* ---- Shared libraries: dlopen or LoadLibrary ----------------------------- */

#ifdef _WIN32
typedef HMODULE lib_t;
static lib_t lib_open(const char *path) { return LoadLibraryA(path); }
static void *lib_sym(lib_t h, const char *name) { return (void *)(uintptr_t)GetProcAddress(h, name); }
static void lib_close(lib_t h) { FreeLibrary(h); }
/* lib_loaded: is the library of path, which had code at addr, still
 * mapped in the process? */
static int lib_loaded(const char *path, void *addr) {
	(void)path;
	HMODULE h;
	return GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
	                          (LPCSTR)addr, &h) != 0;
}
static const char *lib_error(void) {
	static char msg[512];
	DWORD code = GetLastError();
	int n = snprintf(msg, sizeof msg, "error %lu: ", (unsigned long)code);
	FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, code, 0, msg + n,
	               (DWORD)(sizeof msg - n), NULL);
	return msg;
}
#else
typedef void *lib_t;
static lib_t lib_open(const char *path) { return dlopen(path, RTLD_NOW | RTLD_LOCAL); }
static void *lib_sym(lib_t h, const char *name) { return dlsym(h, name); }
static void lib_close(lib_t h) { dlclose(h); }
static int lib_loaded(const char *path, void *addr) {
	(void)addr;
	void *h = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
	if (h)
		dlclose(h);
	return h != NULL;
}
static const char *lib_error(void) { return dlerror(); }
#endif

/* The Lua API, resolved from the privately loaded lua_shared. The headers
 * only declare it; nothing links it (a call missing from the table is a link
 * error). Each name becomes a pointer in api: the macros below are
 * self-referential, so `api.lua_gettop` is not expanded again, and lua.h's
 * own macros (lua_pop, lua_getglobal, ...) expand to these. */
#define LUA_API_FUNCTIONS(X)                                                                                           \
	X(lua_call)                                                                                                    \
	X(lua_close)                                                                                                   \
	X(lua_createtable)                                                                                             \
	X(lua_getfield)                                                                                                \
	X(lua_gettop)                                                                                                  \
	X(lua_insert)                                                                                                  \
	X(lua_pcall)                                                                                                   \
	X(lua_pushboolean)                                                                                             \
	X(lua_pushcclosure)                                                                                            \
	X(lua_pushfstring)                                                                                             \
	X(lua_pushinteger)                                                                                             \
	X(lua_pushlstring)                                                                                             \
	X(lua_pushnil)                                                                                                 \
	X(lua_pushnumber)                                                                                              \
	X(lua_pushstring)                                                                                              \
	X(lua_pushvalue)                                                                                               \
	X(lua_rawseti)                                                                                                 \
	X(lua_remove)                                                                                                  \
	X(lua_setfield)                                                                                                \
	X(lua_settop)                                                                                                  \
	X(lua_toboolean)                                                                                               \
	X(lua_tolstring)                                                                                               \
	X(luaL_addlstring)                                                                                             \
	X(luaL_addvalue)                                                                                               \
	X(luaL_buffinit)                                                                                               \
	X(luaL_checklstring)                                                                                           \
	X(luaL_error)                                                                                                  \
	X(luaL_loadfile)                                                                                               \
	X(luaL_newstate)                                                                                               \
	X(lua_newstate)                                                                                                \
	X(luaL_openlibs)                                                                                               \
	X(luaL_optnumber)                                                                                              \
	X(luaL_prepbuffer)                                                                                             \
	X(luaL_pushresult)                                                                                             \
	X(luaL_register)

static struct {
#define X(f) __typeof__(f) *f;
	LUA_API_FUNCTIONS(X)
#undef X
} api;

/* load_lua dlopens path privately and fills api; it returns an error
 * message, or NULL. */
static const char *load_lua(const char *path) {
	static char err[4200];
	lib_t h = lib_open(path);
	if (!h) {
		snprintf(err, sizeof err, "%s: %s", path, lib_error());
		return err;
	}
#define X(f)                                                                                                           \
	*(void **)&api.f = lib_sym(h, #f);                                                                             \
	if (!api.f) {                                                                                                  \
		snprintf(err, sizeof err, "%s: no %s", path, #f);                                                      \
		return err;                                                                                            \
	}
	LUA_API_FUNCTIONS(X)
#undef X
	return NULL;
}

#define lua_call (api.lua_call)
#define lua_pushfstring (api.lua_pushfstring)
#define luaL_addlstring (api.luaL_addlstring)
#define luaL_addvalue (api.luaL_addvalue)
#define luaL_buffinit (api.luaL_buffinit)
#define luaL_prepbuffer (api.luaL_prepbuffer)
#define luaL_pushresult (api.luaL_pushresult)
#define lua_close (api.lua_close)
#define lua_createtable (api.lua_createtable)
#define lua_getfield (api.lua_getfield)
#define lua_gettop (api.lua_gettop)
#define lua_insert (api.lua_insert)
#define lua_pcall (api.lua_pcall)
#define lua_pushboolean (api.lua_pushboolean)
#define lua_pushcclosure (api.lua_pushcclosure)
#define lua_pushinteger (api.lua_pushinteger)
#define lua_pushlstring (api.lua_pushlstring)
#define lua_pushnil (api.lua_pushnil)
#define lua_pushnumber (api.lua_pushnumber)
#define lua_pushstring (api.lua_pushstring)
#define lua_pushvalue (api.lua_pushvalue)
#define lua_rawseti (api.lua_rawseti)
#define lua_remove (api.lua_remove)
#define lua_setfield (api.lua_setfield)
#define lua_settop (api.lua_settop)
#define lua_toboolean (api.lua_toboolean)
#define lua_tolstring (api.lua_tolstring)
#define luaL_checklstring (api.luaL_checklstring)
#define luaL_error (api.luaL_error)
#define luaL_loadfile (api.luaL_loadfile)
#define luaL_newstate (api.luaL_newstate)
#define lua_newstate (api.lua_newstate)
#define luaL_openlibs (api.luaL_openlibs)
#define luaL_optnumber (api.luaL_optnumber)
#define luaL_register (api.luaL_register)

#ifndef MODULE_SUFFIX
#if defined(_WIN64)
#define MODULE_SUFFIX "win64"
#elif defined(_WIN32)
#define MODULE_SUFFIX "win32"
#elif defined(__x86_64__)
#define MODULE_SUFFIX "linux64"
#else
#define MODULE_SUFFIX "linux"
#endif
#endif

/* Where srcds keeps lua_shared, under the server root, and the real
 * runtime (an absolute path, from the Makefile) it is a link to (a copy on
 * Windows). */
#if defined(_WIN64)
#define LUA_SHARED_PATH "bin/win64/lua_shared.dll"
#elif defined(_WIN32)
#define LUA_SHARED_PATH "garrysmod/bin/lua_shared.dll"
#elif defined(__x86_64__)
#define LUA_SHARED_PATH "bin/linux64/lua_shared.so"
#else
#define LUA_SHARED_PATH "bin/linux32/lua_shared.so"
#endif
#ifndef LUA_SHARED
#error "build with -DLUA_SHARED='\"/path/to/the/lua/runtime.so\"'"
#endif

static const char *root = ".";
static const char *script;
static const char *env_file;
static const char *frame_order = "think-first";
static const char *lua_shared_path = LUA_SHARED_PATH;
static double tickrate = 66;
static double timeout = 120;
static char map[128] = "gm_construct";
static char next_map[128];
static int exit_code = -1;
static int hibernating;
static long ticks, maps;
/* Binary modules still mapped after the last map change unloaded them. */
static int resident;

/* Binary modules loaded in the current state; unloaded with it. */
#define MAX_MODULES 8
static struct {
	lib_t handle;
	lua_CFunction open, close;
	char path[4096];
} modules[MAX_MODULES];
static int nmodules;

/* store keeps strings across map changes (HOST.Set / HOST.Get). */
#define MAX_STORE 64
static struct {
	char *key, *val;
	size_t len;
} store[MAX_STORE];

#ifdef _WIN32
static double now(void) {
	static LARGE_INTEGER freq;
	LARGE_INTEGER t;
	if (!freq.QuadPart)
		QueryPerformanceFrequency(&freq);
	QueryPerformanceCounter(&t);
	return (double)t.QuadPart / (double)freq.QuadPart;
}

/* unix_now: seconds since 1970. */
static double unix_now(void) {
	FILETIME ft;
	GetSystemTimeAsFileTime(&ft);
	uint64_t t = ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime; /* 100 ns since 1601 */
	return (double)(t - 116444736000000000ULL) / 1e7;
}

static void sleep_until(double t) {
	double d = t - now();
	if (d > 0)
		Sleep((DWORD)(d * 1000 + 0.5));
}

static long rss_kb(void) {
	PROCESS_MEMORY_COUNTERS pmc;
	if (!K32GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof pmc))
		return 0;
	return (long)(pmc.WorkingSetSize / 1024);
}
#else
static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double unix_now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double t) {
	double d = t - now();
	if (d <= 0)
		return;
	struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
	nanosleep(&ts, NULL);
}

static long rss_kb(void) {
	long size, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}
#endif

static void fail(const char *msg) {
	fprintf(stderr, "host: FAIL: %s\n", msg);
	if (exit_code <= 0)
		exit_code = 1;
}

/* ---- HOST table ---------------------------------------------------------- */

static int h_exit(lua_State *L) {
	int code = (int)luaL_optnumber(L, 1, 0);
	if (exit_code < 0 || code != 0)
		exit_code = code;
	return 0;
}

static int h_fail(lua_State *L) {
	fail(luaL_checkstring(L, 1));
	return 0;
}

static int h_change_level(lua_State *L) {
	snprintf(next_map, sizeof next_map, "%s", luaL_checkstring(L, 1));
	return 0;
}

static int h_hibernate(lua_State *L) {
	hibernating = lua_toboolean(L, 1);
	return 0;
}

static int h_time(lua_State *L) {
	lua_pushnumber(L, now());
	return 1;
}

/* HOST.Nop(): a C function that does nothing, the reference cost of a
 * Lua-to-C call in the benchmarks. */
static int h_nop(lua_State *L) {
	(void)L;
	return 0;
}

/* HOST.Preemptions(): how many times the kernel took the CPU from this
 * thread to run another (involuntary context switches), or nil where the
 * host cannot tell (Windows): the benchmarks split slow frames by it. */
static int h_preemptions(lua_State *L) {
#ifdef _WIN32
	lua_pushnil(L);
#else
	struct rusage ru;
	if (getrusage(RUSAGE_THREAD, &ru) != 0)
		lua_pushnil(L);
	else
		lua_pushnumber(L, (lua_Number)ru.ru_nivcsw);
#endif
	return 1;
}

/* HOST.Now(): unix time in seconds, for latencies stamped by another process. */
static int h_now(lua_State *L) {
	lua_pushnumber(L, unix_now());
	return 1;
}

static int h_info(lua_State *L) {
	lua_createtable(L, 0, 7);
	lua_pushnumber(L, (lua_Number)ticks);
	lua_setfield(L, -2, "ticks");
	lua_pushnumber(L, (lua_Number)maps);
	lua_setfield(L, -2, "maps");
	lua_pushnumber(L, tickrate);
	lua_setfield(L, -2, "tickrate");
	lua_pushboolean(L, hibernating);
	lua_setfield(L, -2, "hibernating");
	lua_pushstring(L, MODULE_SUFFIX);
	lua_setfield(L, -2, "suffix");
	lua_pushnumber(L, (lua_Number)rss_kb());
	lua_setfield(L, -2, "rss_kb");
	lua_pushnumber(L, (lua_Number)resident);
	lua_setfield(L, -2, "resident");
	return 1;
}

static int h_set(lua_State *L) {
	const char *key = luaL_checkstring(L, 1);
	size_t len;
	const char *val = luaL_checklstring(L, 2, &len);
	int free_slot = -1;
	for (int i = 0; i < MAX_STORE; i++) {
		if (store[i].key && !strcmp(store[i].key, key)) {
			free_slot = i;
			break;
		}
		if (!store[i].key && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0)
		return luaL_error(L, "HOST.Set: store full");
	if (!store[free_slot].key)
		store[free_slot].key = strdup(key);
	free(store[free_slot].val);
	store[free_slot].val = malloc(len + 1);
	memcpy(store[free_slot].val, val, len);
	store[free_slot].len = len;
	return 0;
}

static int h_get(lua_State *L) {
	const char *key = luaL_checkstring(L, 1);
	for (int i = 0; i < MAX_STORE; i++) {
		if (store[i].key && !strcmp(store[i].key, key)) {
			lua_pushlstring(L, store[i].val, store[i].len);
			return 1;
		}
	}
	lua_pushnil(L);
	return 1;
}

/* require as GMod resolves binary modules: lua/bin/gmsv_<name>_<suffix>.dll,
 * loaded on the first require in a state, gmod13_open called, and unloaded
 * (dlclose, FreeLibrary) when the state closes (close_state). */
static int h_require(lua_State *L) {
	const char *name = luaL_checkstring(L, 1);
	lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
	lua_getfield(L, -1, name);
	if (lua_toboolean(L, -1))
		return 1;
	lua_pop(L, 2);
	char path[4096];
	snprintf(path, sizeof path, "%s/garrysmod/lua/bin/gmsv_%s_%s.dll", root, name, MODULE_SUFFIX);
	if (access(path, F_OK) != 0) {
		/* not a binary module: a Lua one, through package.loaders */
		lua_getglobal(L, "__host_lua_require");
		lua_pushvalue(L, 1);
		lua_call(L, 1, 1);
		return 1;
	}
	if (nmodules == MAX_MODULES)
		return luaL_error(L, "host: too many modules");
	lib_t h = lib_open(path);
	if (!h)
		return luaL_error(L, "Couldn't load module library! (%s)", lib_error());
	lua_CFunction open = (lua_CFunction)(uintptr_t)lib_sym(h, "gmod13_open");
	lua_CFunction close = (lua_CFunction)(uintptr_t)lib_sym(h, "gmod13_close");
	if (!open || !close) {
		lib_close(h);
		return luaL_error(L, "%s: no gmod13_open/gmod13_close", path);
	}
	int i = nmodules++;
	modules[i].handle = h;
	modules[i].open = open;
	modules[i].close = close;
	snprintf(modules[i].path, sizeof modules[i].path, "%s", path);
	lua_pushcfunction(L, open);
	lua_pushstring(L, name);
	lua_call(L, 1, 0);
	lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, name);
	lua_pushboolean(L, 1);
	return 1;
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int h_list(lua_State *L) {
	/* HOST.List(dir): sorted *.lua file names under garrysmod/lua/dir */
	char path[4096];
	snprintf(path, sizeof path, "%s/garrysmod/lua/%s", root, luaL_checkstring(L, 1));
	char *names[256];
	size_t n = 0;
	DIR *d = opendir(path);
	for (struct dirent *e; d && n < sizeof names / sizeof names[0] && (e = readdir(d));) {
		size_t len = strlen(e->d_name);
		if (len > 4 && !strcmp(e->d_name + len - 4, ".lua"))
			names[n++] = strdup(e->d_name);
	}
	if (d)
		closedir(d);
	qsort(names, n, sizeof names[0], compare_names);
	lua_newtable(L);
	for (size_t i = 0; i < n; i++) {
		lua_pushstring(L, names[i]);
		lua_rawseti(L, -2, (int)i + 1);
		free(names[i]);
	}
	return 1;
}

/* HOST.Redis(port, arg, ...): one command to the redis-server on
 * 127.0.0.1:port, on a connection of its own (a client outside the module,
 * as redis-cli is); returns the first line of the reply, raises on an error
 * reply. The scripts publish with it on every host, Windows included. */
static int h_redis(lua_State *L) {
	int port = (int)luaL_optnumber(L, 1, 0), n = lua_gettop(L) - 1;
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	lua_pushfstring(L, "*%d\r\n", n);
	luaL_addvalue(&b);
	for (int i = 2; i <= n + 1; i++) {
		size_t len;
		const char *arg = luaL_checklstring(L, i, &len);
		lua_pushfstring(L, "$%d\r\n", (int)len);
		luaL_addvalue(&b);
		luaL_addlstring(&b, arg, len);
		luaL_addlstring(&b, "\r\n", 2);
	}
	luaL_pushresult(&b);
	size_t len;
	const char *req = lua_tolstring(L, -1, &len);
	struct sockaddr_in addr;
	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((unsigned short)port);
	addr.sin_addr.s_addr = htonl(0x7f000001);
	sock_t fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd == INVALID_SOCKET)
		return luaL_error(L, "HOST.Redis: socket failed");
	char line[512];
	size_t got = 0;
	int ok = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
	for (size_t sent = 0; ok && sent < len;) {
		int k = (int)send(fd, req + sent, (int)(len - sent), 0);
		ok = k > 0;
		sent += ok ? (size_t)k : 0;
	}
	while (ok && got < sizeof line - 1 && (got < 2 || memcmp(line + got - 2, "\r\n", 2))) {
		int k = (int)recv(fd, line + got, 1, 0);
		ok = k > 0;
		got += ok ? (size_t)k : 0;
	}
	closesocket(fd);
	if (!ok)
		return luaL_error(L, "HOST.Redis: no reply from 127.0.0.1:%d", port);
	line[got - 2] = 0;
	if (line[0] == '-')
		return luaL_error(L, "HOST.Redis: %s", line);
	lua_pushstring(L, line);
	return 1;
}

/* With $HOST_MEMLIMIT set, the state allocates through limited_alloc
 * (PUC Lua 5.1 and 32-bit LuaJIT; 64-bit LuaJIT has only its own
 * allocator, and runs without a limit): HOST.MemLimit(n) makes every
 * allocation that would take the state more than n bytes above what it
 * uses now fail, as out of memory does; HOST.MemLimit() lifts it. */
static size_t mem_used, mem_limit; /* 0: no limit */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
	(void)ud;
	if (nsize == 0) {
		free(ptr);
		mem_used -= osize;
		return NULL;
	}
	if (mem_limit && nsize > osize && mem_used + (nsize - osize) > mem_limit)
		return NULL;
	void *p = realloc(ptr, nsize);
	if (p)
		mem_used = mem_used - osize + nsize;
	return p;
}

static int h_mem_limit(lua_State *L) {
	double n = luaL_optnumber(L, 1, -1);
	mem_limit = n < 0 ? 0 : mem_used + (size_t)n;
	lua_pushnumber(L, (double)mem_used);
	return 1;
}

static const luaL_Reg host_functions[] = {
    {"Exit", h_exit},      {"Fail", h_fail}, {"ChangeLevel", h_change_level}, {"Hibernate", h_hibernate},
    {"Time", h_time},      {"Now", h_now},   {"Nop", h_nop}, {"Preemptions", h_preemptions},       {"Info", h_info}, {"Set", h_set},                  {"Get", h_get},
    {"List", h_list},      {"Redis", h_redis},  {"MemLimit", h_mem_limit}, {NULL, NULL},
};

/* ---- States -------------------------------------------------------------- */

static int traceback(lua_State *L) {
	lua_getglobal(L, "debug");
	lua_getfield(L, -1, "traceback");
	lua_pushvalue(L, 1);
	lua_pushinteger(L, 2);
	lua_call(L, 2, 1);
	return 1;
}

/* pcall_top runs the function below nargs arguments; errors fail the run. */
static int pcall_top(lua_State *L, int nargs, const char *what) {
	int base = lua_gettop(L) - nargs;
	lua_pushcfunction(L, traceback);
	lua_insert(L, base);
	int rc = lua_pcall(L, nargs, 0, base);
	if (rc != 0) {
		char msg[8192];
		snprintf(msg, sizeof msg, "%s: %s", what, lua_tostring(L, -1));
		fail(msg);
		lua_pop(L, 1);
	}
	lua_remove(L, base);
	return rc;
}

static int run_file(lua_State *L, const char *path) {
	if (luaL_loadfile(L, path) != 0) {
		fail(lua_tostring(L, -1));
		lua_pop(L, 1);
		return 1;
	}
	return pcall_top(L, 0, path);
}

static lua_State *new_state(void) {
	lua_State *L = NULL;
	mem_limit = 0;
	if (getenv("HOST_MEMLIMIT"))
		L = lua_newstate(limited_alloc, NULL);
	if (!L)
		L = luaL_newstate();
	luaL_openlibs(L);
	luaL_register(L, "HOST", host_functions);
	lua_pushstring(L, root);
	lua_setfield(L, -2, "root");
	lua_pushstring(L, map);
	lua_setfield(L, -2, "map");
	lua_pushstring(L, frame_order);
	lua_setfield(L, -2, "frame_order");
	lua_pop(L, 1);
	lua_getglobal(L, "require");
	lua_setglobal(L, "__host_lua_require");
	lua_pushcfunction(L, h_require);
	lua_setglobal(L, "require");
	if (run_file(L, env_file))
		return L;
	/* autorun, as GMod loads addons */
	lua_getglobal(L, "__host_autorun");
	pcall_top(L, 0, "autorun");
	if (run_file(L, script))
		return L;
	lua_getglobal(L, "hook");
	lua_getfield(L, -1, "Run");
	lua_remove(L, -2);
	lua_pushstring(L, "Initialize");
	pcall_top(L, 1, "Initialize");
	return L;
}

static void close_state(lua_State *L) {
	lua_getglobal(L, "hook");
	lua_getfield(L, -1, "Run");
	lua_remove(L, -2);
	lua_pushstring(L, "ShutDown");
	pcall_top(L, 1, "ShutDown");
	for (int i = 0; i < nmodules; i++) {
		lua_pushcfunction(L, modules[i].close);
		lua_call(L, 0, 0);
	}
	lua_close(L);
	for (int i = 0; i < nmodules; i++)
		lib_close(modules[i].handle);
	resident = 0;
	for (int i = 0; i < nmodules; i++)
		resident += lib_loaded(modules[i].path, (void *)(uintptr_t)modules[i].open);
	nmodules = 0;
}

/* mkdirs makes the directories of path. */
static void mkdirs(const char *path) {
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	for (char *p = dir + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
#ifdef _WIN32
			mkdir(dir);
#else
			mkdir(dir, 0755);
#endif
			*p = '/';
		}
	}
}

/* open_lua_shared loads the runtime as srcds does: privately, from
 * bin/<arch>/lua_shared.so under the root (or $HOST_LUA_SHARED), made a link
 * to LUA_SHARED (a copy on Windows) if the server directory has none. */
static int open_lua_shared(void) {
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", root, lua_shared_path);
#ifdef _WIN32
	if (GetFileAttributesA(path) == INVALID_FILE_ATTRIBUTES) {
		mkdirs(path);
		if (!CopyFileA(LUA_SHARED, path, TRUE) && GetLastError() != ERROR_FILE_EXISTS) {
			fprintf(stderr, "host: copy %s to %s: %s\n", LUA_SHARED, path, lib_error());
			return 1;
		}
	}
#else
	struct stat st;
	if (lstat(path, &st) != 0) {
		mkdirs(path);
		if (symlink(LUA_SHARED, path) != 0 && errno != EEXIST) {
			fprintf(stderr, "host: link %s to %s: %s\n", path, LUA_SHARED, strerror(errno));
			return 1;
		}
	}
#endif
	const char *err = load_lua(path);
	if (err) {
		fprintf(stderr, "host: loading the Lua runtime: %s\n", err);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv) {
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-root") && i + 1 < argc)
			root = argv[++i];
		else if (!strcmp(argv[i], "-tickrate") && i + 1 < argc)
			tickrate = atof(argv[++i]);
		else if (!strcmp(argv[i], "-timeout") && i + 1 < argc)
			timeout = atof(argv[++i]);
		else if (!strcmp(argv[i], "-map") && i + 1 < argc)
			snprintf(map, sizeof map, "%s", argv[++i]);
		else if (!strcmp(argv[i], "-env") && i + 1 < argc)
			env_file = argv[++i];
		else if (!strcmp(argv[i], "-frame-order") && i + 1 < argc)
			frame_order = argv[++i];
		else if (argv[i][0] != '-' && !script)
			script = argv[i];
		else {
			fprintf(stderr, "usage: host [-root DIR] [-tickrate N] [-timeout SEC] [-map NAME] "
			                "[-frame-order think-first|timers-first] -env env.lua script.lua\n");
			return 2;
		}
	}
	if (!script || !env_file) {
		fprintf(stderr, "host: a script and -env are required\n");
		return 2;
	}
	if (strcmp(frame_order, "think-first") && strcmp(frame_order, "timers-first")) {
		fprintf(stderr, "host: -frame-order %s: want think-first or timers-first\n", frame_order);
		return 2;
	}
	if (getenv("HOST_LUA_SHARED"))
		lua_shared_path = getenv("HOST_LUA_SHARED");
	if (open_lua_shared())
		return 2;
#ifdef _WIN32
	WSADATA wsa;
	if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
		fprintf(stderr, "host: WSAStartup failed\n");
		return 2;
	}
#endif
#ifdef _WIN32
	/* msvcrt has no line buffering (_IOLBF buffers fully), and the runtime
	 * shares this stdout: unbuffered, and no \r added to lines. */
	setvbuf(stdout, NULL, _IONBF, 0);
	_setmode(_fileno(stdout), _O_BINARY);
	_setmode(_fileno(stderr), _O_BINARY);
#else
	setvbuf(stdout, NULL, _IOLBF, 0);
#endif
	double start = now(), next_tick = start;
	maps = 1;
	lua_State *L = new_state();
	while (exit_code < 0) {
		ticks++;
		lua_getglobal(L, "__host_tick");
		lua_pushboolean(L, hibernating);
		pcall_top(L, 1, "tick");
		if (exit_code >= 0)
			break;
		if (next_map[0]) {
			close_state(L);
			snprintf(map, sizeof map, "%s", next_map);
			next_map[0] = 0;
			maps++;
			L = new_state();
		}
		if (now() - start > timeout) {
			fail("timeout");
			break;
		}
		if (tickrate > 0) {
			next_tick += 1 / tickrate;
			if (next_tick < now() - 1) /* far behind: do not catch up in a burst */
				next_tick = now();
			sleep_until(next_tick);
		}
	}
	close_state(L);
	return exit_code;
}
