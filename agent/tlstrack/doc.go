// Package tlstrack finds the TLS libraries processes use and keeps the TLS
// plaintext probes (socktrace.AttachSSL, socktrace.AttachGoTLS) attached to
// them while they are in use.
//
// # What is covered
//
//   - Shared OpenSSL-API libraries: every mapped file named libssl.so*
//     (OpenSSL 1.1 and 3, and LibreSSL or BoringSSL builds installed under
//     that name) whose symbol tables define SSL_read and SSL_write;
//     SSL_read_ex and SSL_write_ex are probed too when defined. NSS's
//     libssl3.so is a different API and is not matched.
//   - Executables with OpenSSL, LibreSSL or BoringSSL linked in statically
//     (nginx built static, Node.js, Envoy debug builds...) when their .symtab
//     or .dynsym defines SSL_read and SSL_write (kind "static-openssl").
//   - Go executables that use crypto/tls: crypto/tls.(*Conn).Read and Write
//     are found through the pclntab, so stripped binaries (-ldflags=-s -w)
//     are covered too; the struct offsets come from agent/goinfo (DWARF, or
//     its per-version table).
//
// # What is not covered
//
// Stripped executables with OpenSSL or BoringSSL linked in statically, such
// as Envoy release builds: without symbols the functions cannot be found.
// Such a file is recognised by the version text or source-file names the
// library leaves in .rodata, and reported: GET /debug/tls lists the process
// with "covered": false and an "uncovered" entry whose reason starts with
// "no SSL symbols" (Stats.NoSymbols counts them). Other reasons there are
// "open: ...", "inspect: ...", "attach: ..." and "limit reached: ...".
// Other TLS stacks (GnuTLS, NSS, rustls, Java's JSSE) are not covered.
// Libraries loaded under another name (a renamed libssl, a library that
// bundles OpenSSL under its own name) are not looked at: only the main
// executable and libssl.so* files are inspected, so that the periodic
// rescan stays cheap. A process forked without an exec (a server's
// workers) is seen at the next periodic rescan; until then, its calls into
// an already probed library are decrypted unless Config.Processes is set.
//
// # Lifecycle
//
// Run scans every process at start. Exec and exit events (ProcessExec,
// ProcessExit; they never block, a full queue is counted) start and end the
// tracking of a process; an exec'd process is looked at again 50 ms and 1 s
// after the exec (ld.so maps libraries just after it), and every process
// every Config.RescanEvery (libraries loaded later with dlopen, such as
// Python's _ssl at "import ssl"). A rescan only costs reading
// /proc/PID/maps: each file (device, inode) is inspected once, its verdict
// remembered. Probes are attached once per file and detached when the last
// process mapping it exits. Files are opened through /proc/PID/map_files
// (the very inode mapped, whatever the process's mount namespace, also when
// the file was deleted or replaced since), falling back to
// /proc/PID/root/PATH, and attached as /proc/self/fd/N. The agent itself is
// never tracked.
//
// With Config.Processes set, only processes whose comm or executable path
// matches are looked at, and each is allowed with Kernel.AllowTLS (the
// kernel then drops the TLS events of other processes that share a probed
// library).
//
// # /debug/tls
//
// Handler serves Coverage as JSON:
//
//	{
//	  "processes": [
//	    {
//	      "pid": 4242, "comm": "python3", "exe": "/usr/bin/python3.11", "covered": true,
//	      "libraries": [{"path": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "kind": "openssl", "version": "3"}],
//	      "uncovered": [{"path": "/usr/local/bin/envoy", "reason": "no SSL symbols: ..."}]
//	    }
//	  ],
//	  "stats": {"files": 1, "processes": 1, "allowed": 0, "inspected": 12, "no_tls": 11, "no_symbols": 0,
//	            "inspect_failed": 0, "attach_failed": 0, "allow_failed": 0, "limit_reached": 0,
//	            "queue_full": 0, "filtered_out": 0, "maps_truncated": 0, "cache_resets": 0, "scans": 3}
//	}
//
// "kind" is "openssl" (shared libssl), "static-openssl" or "go"; "version"
// is the OpenSSL/LibreSSL version text when the file carries it
// ("OpenSSL 3.0.19"), "BoringSSL", the libssl.so suffix ("3", "1.1"), or the
// Go version ("go1.26.8"). Only processes with TLS files are listed.
package tlstrack
