// Header-only target; this file makes SwiftPM build it as a C module.
#include "migrator_cshims.h"
