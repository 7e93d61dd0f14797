/* kdcl bench --report DIR: the files of a vendor-comparison report from a
 * kdcl-bench-1 document (tools/kdcl-bench-1.md). */
#ifndef KDCL_CLI_BENCH_REPORT_H
#define KDCL_CLI_BENCH_REPORT_H

#include <cjson/cJSON.h>

/* Write into dir (which exists): bench.json (the document), bench.csv (one
 * row per device and result), report.md (the run, every device's metadata,
 * one table per kind of result across devices, the plots) and the PNG plots
 * gemm.png, train.png, infer.png, time.png (those with data). A document that is not
 * kdcl-bench-1 is refused. Prints "kdcl bench: ..." and returns non-zero on
 * failure; lists the files written on stdout. */
int bench_report_write(const char *dir, const cJSON *root);

#endif
