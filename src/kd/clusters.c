/* Class clusters from the covariance of a generalist's predictions (placeholder). */
#include "kdcl/specialists.h"
