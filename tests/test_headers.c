/* The public headers stand alone: kdcl/kdcl.h compiles without
 * the OpenCL headers, which only kdcl/opencl.h includes, and every header
 * compiles on its own. A program that uses kdcl's tensors, models and
 * training loop needs nothing of OpenCL. */
#include "kdcl/kdcl.h"

#if defined(__OPENCL_CL_H) || defined(CL_SUCCESS)
#error "a public header other than kdcl/opencl.h included the OpenCL headers"
#endif

#include "kdcl/conv.h"
#include "kdcl/data.h"
#include "kdcl/dist.h"
#include "kdcl/file.h"
#include "kdcl/opencl.h"
#include "kdcl/profile.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
    /* the library loaded is the one the headers describe */
    if (strcmp(kdcl_version(), KDCL_VERSION)) {
        fprintf(stderr, "libkdcl %s, headers %s\n", kdcl_version(), KDCL_VERSION);
        return 1;
    }
    /* a tensor's buffer is a cl_mem */
    kdcl_tensor t = {0};
    cl_mem m = t.buf;
    kdcl_free(NULL);
    return m != NULL;
}
