// migrator runs on Linux only: it relies on glibc, /proc, open-file-description
// locks and ELF. Say so at build time rather than fail in odd ways later.
#if !os(Linux)
#error("migrator supports Linux only")
#endif
