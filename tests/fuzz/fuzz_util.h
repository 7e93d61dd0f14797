/* Shared pieces of the libFuzzer harnesses (tests/fuzz/). Each harness is one
 * file defining LLVMFuzzerTestOneInput for one parser of user input. */
#ifndef KDCL_FUZZ_UTIL_H
#define KDCL_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A private directory for this process (in /dev/shm when it is writable, else
 * $TMPDIR or /tmp), created on first use and removed at exit. */
const char *fz_dir(void);
/* Write bytes to fz_dir()/name (replacing it); returns the path (a static
 * buffer per name slot: slot 0..3). Aborts on I/O errors. */
const char *fz_write(int slot, const char *name, const void *data, size_t n);
/* fz_dir()/name into a static buffer of slot 0..3, nothing written. */
const char *fz_path(int slot, const char *name);
/* Remove fz_dir()/name and everything under it (a file or a tree). */
void fz_remove(const char *name);
/* data[0..n) as a NUL-terminated malloc'ed string (aborts when out of memory). */
char *fz_cstr(const uint8_t *data, size_t n);

#endif
