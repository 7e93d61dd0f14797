/* The KL combination of a generalist and its specialists (placeholder). */
#include "kdcl/specialists.h"
