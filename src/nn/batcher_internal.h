/* Internal: the batcher's state (kdcl/train.h), which the library's loops
 * keep on their stack. */
#ifndef KDCL_NN_BATCHER_INTERNAL_H
#define KDCL_NN_BATCHER_INTERNAL_H

#include "kdcl/opencl.h"
#include "kdcl/train.h"

struct kdcl_batcher {
    kdcl_ctx *ctx;
    const kdcl_dataset *ds;
    size_t max_batch;
    int resident;
    size_t *order;                 /* host permutation of 0..n-1 */
    kdcl_tensor images, labels;    /* resident copies (U8 [n, dim], I32 [n]) */
    kdcl_tensor perm;              /* I32 [n] */
    kdcl_tensor batch_u8[2];       /* U8 [max_batch, dim] */
    kdcl_tensor batch_labels[2];   /* I32 [max_batch] */
    uint8_t *stage[2];
    int32_t *stage_labels[2];
    struct _cl_event *pending[2]; /* cl_event */
    int cur;                       /* index of the buffer filled by the last load */
    size_t n_order;                /* entries of order in use (ds->n unless set_order) */
    size_t order_cap;              /* entries allocated in order / perm */
};

/* kdcl_batcher_create / kdcl_batcher_destroy on a caller's struct. */
kdcl_status kdcl__batcher_init(kdcl_ctx *ctx, const kdcl_dataset *ds, size_t max_batch,
                               kdcl_batcher *b);
void kdcl__batcher_release(kdcl_batcher *b);

#endif
