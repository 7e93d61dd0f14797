/* Specialist models with a dustbin class (placeholder). */
#include "kdcl/specialists.h"
