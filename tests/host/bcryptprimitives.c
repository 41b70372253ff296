/* bcryptprimitives.dll for Wine 8, tests only: Go's Windows runtime (1.24+)
 * takes its random bytes from ProcessPrng, which Windows 10 has and Wine 8
 * lacks, and aborts at load without it. This stand-in exports ProcessPrng
 * (undecorated on 32-bit: link with -Wl,--kill-at) and fills the buffer from
 * RtlGenRandom (advapi32's SystemFunction036). The Makefile puts it in the
 * test Wine prefix's system32 and syswow64, where Go looks for it; it is
 * never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG len);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
	while (len > 0) {
		ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
