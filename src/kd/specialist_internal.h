/* Internal: what the specialists' files (specialist_files.c) and their
 * worker pool (specialist_pool.c) share. */
#ifndef KDCL_KD_SPECIALIST_INTERNAL_H
#define KDCL_KD_SPECIALIST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* "3,5,7" into buf (stops while a class id still fits). */
void kdcl__format_classes(char *buf, size_t size, const int32_t *cls, size_t n);

#endif
