// Linux constants that Swift's Glibc module does not import, because glibc
// defines them only under _GNU_SOURCE. Read-only values; no state.
#ifndef MIGRATOR_CSHIMS_H
#define MIGRATOR_CSHIMS_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>

/// fcntl(2) command: test an open-file-description lock (F_OFD_GETLK).
static const int migrator_F_OFD_GETLK = F_OFD_GETLK;
/// fcntl(2) command: take an open-file-description lock, non-blocking (F_OFD_SETLK).
static const int migrator_F_OFD_SETLK = F_OFD_SETLK;
/// open(2) flag: fail with ELOOP if the last path component is a symlink.
static const int migrator_O_NOFOLLOW = O_NOFOLLOW;

#endif
