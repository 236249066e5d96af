// OpenSSL's libcrypto (Debian: libssl-dev), for SHA-256 of plugin files:
// its SHA-NI code hashed 1.77 GB/s here against ~250 MB/s for portable code;
// and Ed25519 for plugin signatures.
#include <openssl/evp.h>
