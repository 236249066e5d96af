// Host-side helper, not part of the plugin ABI: the v1 offsets as compiled
// by C, so Swift tests can compare them with what Swift imports.
#ifndef MIGRATOR_ABI_LAYOUT_H
#define MIGRATOR_ABI_LAYOUT_H
#include "migrator_plugin.h"
size_t migrator_abi_layout(size_t *out, size_t capacity);
#endif
