/* kdcl datasets: IDX (MNIST / Fashion-MNIST), CIFAR-10/100 binary batches and
 * image folders, loaded into host memory as uint8 HWC images + int32 labels;
 * subsets, validation splits and deterministic shuffling.
 *
 * All loaders validate their input completely (magic numbers, dimensions,
 * sizes with overflow checks, truncated or corrupt gzip streams) and report
 * problems through kdcl_status + kdcl_last_error(), naming the file and what
 * is wrong. On failure `out` is left zeroed.
 */
#ifndef KDCL_DATA_H
#define KDCL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "kdcl/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most bytes a gzip file of unknown length (CIFAR) may inflate to. */
#define KDCL_GZIP_MAX ((size_t)1 << 30)

typedef struct kdcl_dataset {
    size_t n;           /* number of examples */
    size_t h, w, c;     /* image height, width, channels (1 grey, 3 RGB); IDX: rows, cols, 1 */
    size_t dim;         /* h*w*c: bytes per example, layout HWC row-major */
    size_t n_classes;   /* max label + 1, or the number of class folders / CIFAR classes */
    uint8_t *images;    /* n * dim bytes, owned (NULL when n == 0) */
    int32_t *labels;    /* n labels in [0, n_classes), owned (NULL when n == 0) */
    char **class_names; /* n_classes strings or NULL */
} kdcl_dataset;

/* IDX pair (images idx3-ubyte + labels idx1-ubyte), each raw or gzip
 * (detected by the gzip magic, not the name). n_classes = max label + 1.
 * The header is read and checked first; a raw file must then be exactly as
 * long as its header says, and a gzip stream is inflated into a buffer of
 * exactly that size, refused if it holds fewer or more bytes (so a small
 * compressed file cannot inflate beyond what its header promises). */
KDCL_API kdcl_status kdcl_dataset_load_idx(const char *images_path, const char *labels_path,
                                  kdcl_dataset *out);

/* CIFAR binary batches. CIFAR-10 records: <label><3072 bytes CHW>; CIFAR-100
 * records: <coarse><fine><3072 bytes CHW>. Converted to HWC 32x32x3. Each file
 * size must be a non-zero multiple of the record size; a gzip file may inflate
 * to at most KDCL_GZIP_MAX bytes. fine_labels selects the
 * CIFAR-100 fine label (100 classes) instead of the coarse one (20 classes).
 * Class names are read from batches.meta.txt (CIFAR-10) or
 * fine_label_names.txt / coarse_label_names.txt (CIFAR-100) next to files[0]
 * when present. */
KDCL_API kdcl_status kdcl_dataset_load_cifar(const char *const *files, size_t n_files, int cifar100,
                                    int fine_labels, kdcl_dataset *out);

/* ---- images ----------------------------------------------------------
 * Accepted formats, recognised by their content (not the file name):
 *   PNG  (libpng): grey, grey+alpha, RGB, RGBA, palette; 1..16 bits; interlaced
 *   JPEG (libjpeg-turbo): baseline and progressive; grey, YCbCr/RGB, CMYK/YCCK
 *   BMP  (stb_image): 1/4/8/16/24/32 bits, uncompressed or bit fields (no RLE)
 * Every other format (GIF, TGA, PSD, HDR, PIC, PNM, TIFF, WebP, ...) is refused
 * as unsupported. Before any pixel is decoded the header is read and the image
 * is refused unless width and height are 1..KDCL_IMAGE_MAX_SIDE and the decoded
 * pixels (width x height x the file's own channels) take at most
 * KDCL_IMAGE_MAX_BYTES; files larger than KDCL_IMAGE_MAX_FILE are refused
 * unread. A truncated or corrupt file is an error, never a partly grey image
 * (JPEG: the file ending early, a scan cut short by a marker, a bad Huffman
 * or arithmetic code, a lost restart marker; extraneous bytes between markers
 * are tolerated).
 * Channels: grey -> RGB replicates; RGB -> grey is (77 R + 150 G + 29 B) >> 8;
 * alpha is dropped (not composited); 16-bit samples keep their high byte. */
#define KDCL_IMAGE_MAX_SIDE 16384u
#define KDCL_IMAGE_MAX_BYTES ((size_t)64 << 20)
#define KDCL_IMAGE_MAX_FILE ((size_t)128 << 20)

/* Decode one image file held in memory (data[0..size)) into dst: h x w x
 * channels bytes, HWC row-major, channels 1 (grey) or 3 (RGB), resized to
 * w x h (w, h in 1..65536) when the file's size differs. `name` (may be NULL)
 * starts the error messages, e.g. the file's path. KDCL_ERR_FORMAT for an
 * unsupported, corrupt, truncated or too large image. */
KDCL_API kdcl_status kdcl_image_decode(const void *data, size_t size, const char *name, size_t w, size_t h,
                              size_t channels, uint8_t *dst);

/* Options of the image-folder loader (all zero: the defaults). */
typedef struct kdcl_image_opts {
    /* 0: the first file that cannot be read or decoded is an error naming it.
     * 1: such files are skipped; each one is counted and reported to on_skip. */
    int skip_bad;
    /* Called (when not NULL) for each skipped file with its path and the error
     * message, which names the file. */
    void (*on_skip)(void *user, const char *path, const char *reason);
    void *user;
    size_t n_skipped; /* out: files skipped */
} kdcl_image_opts;

/* Image folder root/<class>/<file>: classes sorted by name (strcmp) give
 * labels 0..; files sorted within a class; hidden entries (".*") skipped.
 * Every file is decoded (kdcl_image_decode: PNG, JPEG or BMP), converted to
 * `channels` (1 or 3) and resized to w x h. Any undecodable file is an error
 * naming it. */
KDCL_API kdcl_status kdcl_dataset_load_images(const char *root, size_t w, size_t h, size_t channels,
                                     kdcl_dataset *out);
/* The same with options (opts may be NULL). With opts->skip_bad the dataset
 * holds the files that decoded (an error if none did); a class whose files
 * were all skipped keeps its label and name but has no examples. Running out
 * of memory is never skipped. */
KDCL_API kdcl_status kdcl_dataset_load_images_opts(const char *root, size_t w, size_t h, size_t channels,
                                          kdcl_image_opts *opts, kdcl_dataset *out);

/* Load a split ("train", "test"; image folders accept any split name) from a
 * directory, detecting the format:
 *   IDX:        <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
 *               (also the "train-images.idx3-ubyte" spelling)
 *   CIFAR-10:   <dir>[/cifar-10-batches-bin]/data_batch_1..5.bin | test_batch.bin
 *   CIFAR-100:  <dir>[/cifar-100-binary]/train.bin | test.bin (fine labels)
 *   images:     <dir>/<split>/<class>/<file> resized to 32x32 RGB
 * KDCL_ERR_IO with a message listing what was looked for if none matches. */
KDCL_API kdcl_status kdcl_dataset_load_split(const char *dir, const char *split, kdcl_dataset *out);
/* The same, with the options image folders are loaded with (may be NULL). */
KDCL_API kdcl_status kdcl_dataset_load_split_opts(const char *dir, const char *split,
                                         kdcl_image_opts *image_opts, kdcl_dataset *out);

/* Free everything; safe on a zeroed struct or NULL; leaves it zeroed. */
KDCL_API void kdcl_dataset_free(kdcl_dataset *d);

/* New dataset with copies of the examples idx[0..n) (n may be 0). Class names
 * and n_classes are copied unchanged. */
KDCL_API kdcl_status kdcl_dataset_subset(const kdcl_dataset *d, const size_t *idx, size_t n,
                                kdcl_dataset *out);

/* Split off the last n_val examples of a seeded permutation as a validation
 * set; train gets the rest. Both keep the original relative order. */
KDCL_API kdcl_status kdcl_dataset_split_val(const kdcl_dataset *d, size_t n_val, uint64_t seed,
                                   kdcl_dataset *train, kdcl_dataset *val);

/* Deep copy. */
KDCL_API kdcl_status kdcl_dataset_copy(const kdcl_dataset *d, kdcl_dataset *out);

/* Per-channel mean and standard deviation (population) of the pixels / 255
 * over every example (d->c <= 4 channels; a constant channel gets std 1). */
KDCL_API kdcl_status kdcl_dataset_channel_stats(const kdcl_dataset *d, float *mean, float *std);

/* Number of examples of each class: counts[0..d->n_classes). */
KDCL_API void kdcl_dataset_class_counts(const kdcl_dataset *d, size_t *counts);

/* ---- datasets from the caller's arrays, on the heap (for bindings) ---- */

/* Layout of one example in the caller's arrays. */
typedef enum kdcl_layout {
    KDCL_LAYOUT_HWC = 0, /* kdcl's own: rows of pixels, channels interleaved */
    KDCL_LAYOUT_CHW = 1  /* channel planes (PyTorch's, numpy's [N, C, H, W]) */
} kdcl_layout;

/* An empty (zeroed) dataset on the heap, for the loaders above to fill;
 * NULL when out of memory. kdcl_dataset_destroy frees its contents and it. */
KDCL_API kdcl_dataset *kdcl_dataset_create(void);
KDCL_API void kdcl_dataset_destroy(kdcl_dataset *d);

/* Fill `out` with copies of n examples of c x h x w uint8 pixels in `layout`
 * (images: n*c*h*w bytes; converted to HWC) and their labels (n int32 in
 * [0, n_classes)). n_classes 0: max label + 1. n >= 1, c in 1..4, h, w >= 1;
 * a label out of range, sizes that overflow or a NULL array:
 * KDCL_ERR_INVALID_ARG (KDCL_ERR_OVERFLOW) naming it; out is left zeroed. */
KDCL_API kdcl_status kdcl_dataset_from_arrays(const uint8_t *images, const int32_t *labels,
                                              size_t n, size_t c, size_t h, size_t w,
                                              kdcl_layout layout, size_t n_classes,
                                              kdcl_dataset *out);
/* Sizes of a dataset (any pointer may be NULL). */
KDCL_API void kdcl_dataset_shape(const kdcl_dataset *d, size_t *n, size_t *c, size_t *h,
                                 size_t *w, size_t *n_classes);
/* Copy the examples out: images (n*c*h*w bytes, in `layout`) and labels (n
 * int32); either may be NULL. */
KDCL_API void kdcl_dataset_to_arrays(const kdcl_dataset *d, kdcl_layout layout, uint8_t *images,
                                     int32_t *labels);

/* Deterministic RNG: xoshiro256** seeded with splitmix64. */
typedef struct kdcl_rng {
    uint64_t s[4];
} kdcl_rng;
KDCL_API void kdcl_rng_seed(kdcl_rng *r, uint64_t seed);
KDCL_API uint64_t kdcl_rng_next(kdcl_rng *r);
/* Uniform integer in [0, n) without modulo bias (0 when n == 0). */
KDCL_API uint64_t kdcl_rng_below(kdcl_rng *r, uint64_t n);
/* Uniform double in [0, 1) (53 bits). */
KDCL_API double kdcl_rng_uniform(kdcl_rng *r);
/* Fisher-Yates permutation of 0..n-1 determined by (seed, epoch). */
KDCL_API void kdcl_shuffle_indices(size_t *idx, size_t n, uint64_t seed, uint64_t epoch);

#ifdef __cplusplus
}
#endif
#endif
