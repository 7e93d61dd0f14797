/* kdcl bench --report: the report's files from a kdcl-bench-1 document
 * (--from, so that nothing is measured): bench.json as given, bench.csv one
 * valid RFC 4180 row per device and result, report.md with every metadata
 * field of every device, PNG plots that decode and show a bar per device;
 * tools/bench_compare.py --compare; and every metadata field of a real
 * (quick, GEMMs only) run on the suite's device. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kdcl/kdcl.h"
#include "testutil.h"

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20;
    char *b = malloc(cap + 1);
    ck_assert_ptr_nonnull(b);
    *n = fread(b, 1, cap, f);
    b[*n] = '\0';
    fclose(f);
    return b;
}

/* Two devices, every metadata field, results of each kind; a label with a
 * comma and a quote (CSV quoting), one result missing on the second device. */
static const char doc[] =
    "{\"schema\": \"kdcl-bench-1\", \"tool\": \"kdcl\", \"kdcl_version\": \"0.1.0\","
    " \"git\": \"abc1234\", \"command_line\": \"kdcl bench --quick --all-devices\","
    " \"date\": \"2026-01-01T00:00:00Z\", \"seconds\": 12.5,"
    " \"host\": {\"hostname\": \"h\", \"cpu_model\": \"AMD EPYC\", \"cpus\": 2, \"os\": \"Linux\","
    "   \"loadavg_start\": 1.0, \"loadavg_end\": 1.5},"
    " \"options\": {\"quick\": true, \"full\": false, \"reps\": 1},"
    " \"devices\": ["
    "  {\"label\": \"cpu0 (PoCL 3.1)\", \"device\": \"cpu0\", \"platform\": \"Portable Computing "
    "Language\", \"platform_vendor\": \"The pocl project\", \"platform_version\": \"OpenCL 3.0 "
    "PoCL\", \"vendor\": \"AuthenticAMD\", \"driver\": \"3.1\", \"opencl_version\": \"OpenCL 3.0\","
    "   \"opencl_c_version\": \"OpenCL C 1.2\", \"type\": \"CPU\", \"compute_units\": 2,"
    "   \"clock_mhz\": 2450, \"global_mem_bytes\": 8e9, \"max_alloc_bytes\": 2e9,"
    "   \"local_mem_bytes\": 4194304, \"fp16\": false, \"fp64\": true, \"clblast_version\": "
    "\"1.5.3\", \"gemm_params_source\": \"shipped\", \"gemm_tuning\": \"shipped: PoCL CPU\","
    "   \"conv_algo\": \"kdcl\", \"build\": {\"context_seconds\": 0.1, "
    "\"clblast_first_call_seconds\": 2.5, \"build_seconds\": 1.5, \"builds\": 3, \"cache_hits\": 7},"
    "   \"errors\": [],"
    "   \"results\": ["
    "    {\"id\": \"gemm.128x1200x784.NT\", \"label\": \"teacher fwd\", \"kind\": \"gemm\","
    "     \"unit\": \"GFLOP/s\", \"better\": \"higher\", \"median\": 60, \"min\": 55, \"max\": 62, "
    "\"reps\": 3},"
    "    {\"id\": \"gemm.128x1200x784.NT.default\", \"label\": \"teacher fwd (defaults)\","
    "     \"kind\": \"gemm\", \"unit\": \"GFLOP/s\", \"better\": \"higher\", \"median\": 20,"
    "     \"min\": 20, \"max\": 20, \"reps\": 1},"
    "    {\"id\": \"gemm.128x10x1200.NT\", \"label\": \"teacher out\", \"kind\": \"gemm\","
    "     \"unit\": \"GFLOP/s\", \"better\": \"higher\", \"median\": 5, \"min\": 4, \"max\": 6, "
    "\"reps\": 3},"
    "    {\"id\": \"train.teacher.b128\", \"label\": \"teacher, \\\"dropout\\\" B=128\","
    "     \"kind\": \"train\", \"unit\": \"samples/s\", \"better\": \"higher\", \"median\": 5000,"
    "     \"min\": 4900, \"max\": 5100, \"reps\": 3},"
    "    {\"id\": \"infer.student.b128\", \"label\": \"student\", \"kind\": \"infer\","
    "     \"unit\": \"images/s\", \"better\": \"higher\", \"median\": 90000, \"min\": 80000,"
    "     \"max\": 95000, \"reps\": 3},"
    "    {\"id\": \"step.teacher.b128\", \"label\": \"teacher step\", \"kind\": \"step\","
    "     \"unit\": \"ms\", \"better\": \"lower\", \"median\": 20, \"min\": 19, \"max\": 22, "
    "\"reps\": 3},"
    "    {\"id\": \"tte.fashion.mlp100\", \"label\": \"time to 18%\", \"kind\": \"time\","
    "     \"unit\": \"s\", \"better\": \"lower\", \"median\": 3.1, \"min\": 3.1, \"max\": 3.1, "
    "\"reps\": 1}]},"
    "  {\"label\": \"AMD EPYC (Intel(R) OpenCL 2026)\", \"device\": \"AMD EPYC\", \"platform\":"
    " \"Intel(R) OpenCL\", \"platform_vendor\": \"Intel(R) Corporation\", \"platform_version\":"
    " \"OpenCL 3.0 LINUX\", \"vendor\": \"Intel(R) Corporation\", \"driver\": \"2026.22\","
    "   \"opencl_version\": \"OpenCL 3.0\", \"opencl_c_version\": \"OpenCL C 3.0\", \"type\": "
    "\"CPU\", \"compute_units\": 2, \"clock_mhz\": 0, \"global_mem_bytes\": 8e9,"
    "   \"max_alloc_bytes\": 4e9, \"local_mem_bytes\": 32768, \"fp16\": true, \"fp64\": true,"
    "   \"clblast_version\": \"1.5.3\", \"gemm_params_source\": \"defaults\", \"gemm_tuning\":"
    " \"CLBlast defaults\", \"conv_algo\": \"kdcl\", \"build\": {\"context_seconds\": 0.2,"
    " \"clblast_first_call_seconds\": 4.5, \"build_seconds\": 2.5, \"builds\": 3, \"cache_hits\": 0},"
    "   \"errors\": [\"infer: something failed\"],"
    "   \"results\": ["
    "    {\"id\": \"gemm.128x1200x784.NT\", \"label\": \"teacher fwd\", \"kind\": \"gemm\","
    "     \"unit\": \"GFLOP/s\", \"better\": \"higher\", \"median\": 8, \"min\": 7, \"max\": 9, "
    "\"reps\": 3},"
    "    {\"id\": \"gemm.128x10x1200.NT\", \"label\": \"teacher out\", \"kind\": \"gemm\","
    "     \"unit\": \"GFLOP/s\", \"better\": \"higher\", \"median\": 3, \"min\": 3, \"max\": 3, "
    "\"reps\": 1},"
    "    {\"id\": \"train.teacher.b128\", \"label\": \"teacher, \\\"dropout\\\" B=128\","
    "     \"kind\": \"train\", \"unit\": \"samples/s\", \"better\": \"higher\", \"median\": 700,"
    "     \"min\": 690, \"max\": 720, \"reps\": 3},"
    "    {\"id\": \"step.teacher.b128\", \"label\": \"teacher step\", \"kind\": \"step\","
    "     \"unit\": \"ms\", \"better\": \"lower\", \"median\": 150, \"min\": null, \"max\": null, "
    "\"reps\": 1},"
    "    {\"id\": \"tte.fashion.mlp100\", \"label\": \"time to 18%\", \"kind\": \"time\","
    "     \"unit\": \"s\", \"better\": \"lower\", \"median\": 40, \"min\": 40, \"max\": 40, "
    "\"reps\": 1}]}]}";

/* RFC 4180 fields of one record starting at *p (advanced past its CRLF). */
static int csv_record(const char **p, char fields[16][256])
{
    int n = 0;
    const char *s = *p;
    for (;;) {
        ck_assert_int_lt(n, 16);
        size_t k = 0;
        if (*s == '"') {
            s++;
            for (;;) {
                ck_assert_msg(*s, "unterminated quoted CSV field");
                if (*s == '"' && s[1] == '"') {
                    fields[n][k++] = '"';
                    s += 2;
                } else if (*s == '"') {
                    s++;
                    break;
                } else {
                    fields[n][k++] = *s++;
                }
                ck_assert_uint_lt(k, 255);
            }
        } else {
            while (*s && *s != ',' && *s != '\r' && *s != '\n') {
                ck_assert_msg(*s != '"', "a quote inside an unquoted CSV field");
                fields[n][k++] = *s++;
                ck_assert_uint_lt(k, 255);
            }
        }
        fields[n++][k] = '\0';
        if (*s == ',') {
            s++;
            continue;
        }
        ck_assert_msg(s[0] == '\r' && s[1] == '\n', "CSV record not ended by CRLF");
        *p = s + 2;
        return n;
    }
}

/* The PNG at path: decodes; bars of the first two palette colours present. */
static void check_png(const char *path)
{
    size_t n;
    char *b = slurp(path, &n);
    ck_assert_msg(b && n > 24 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8), "%s: not a PNG", path);
    const unsigned char *u = (const unsigned char *)b;
    size_t w = (size_t)u[16] << 24 | (size_t)u[17] << 16 | (size_t)u[18] << 8 | u[19];
    size_t h = (size_t)u[20] << 24 | (size_t)u[21] << 16 | (size_t)u[22] << 8 | u[23];
    ck_assert_msg(w >= 200 && h >= 50 && w <= 4096 && h <= 4096, "%s: %zux%zu", path, w, h);
    uint8_t *px = malloc(w * h * 3);
    ck_assert_msg(kdcl_image_decode(b, n, path, w, h, 3, px) == KDCL_OK, "%s", kdcl_last_error());
    static const uint8_t c0[3] = {31, 119, 180}, c1[3] = {255, 127, 14};
    size_t n0 = 0, n1 = 0;
    for (size_t i = 0; i < w * h; i++) {
        n0 += !memcmp(px + 3 * i, c0, 3);
        n1 += !memcmp(px + 3 * i, c1, 3);
    }
    /* the legend has 240 pixels of each colour: more means bars */
    ck_assert_msg(n0 > 400 && n1 > 400, "%s: %zu / %zu pixels of the two devices' colours", path,
                  n0, n1);
    free(px);
    free(b);
}

START_TEST(test_report_files)
{
    char in[4200], dir[4200], cmd[20000], path[4400];
    snprintf(in, sizeof in, "%s", tu_path("bench-in.json"));
    snprintf(dir, sizeof dir, "%s", tu_path("report"));
    ck_assert_int_eq(tu_write_file(in, doc, sizeof doc - 1), 0);
    tu_run_result *r = malloc(sizeof *r);
    snprintf(cmd, sizeof cmd, "bench --report %s --from %s", dir, in);
    tu_run(r, cmd);
    ck_assert_msg(r->status == 0, "exit %d: %s%s", r->status, r->out, r->err);

    /* bench.json: the document */
    size_t n;
    snprintf(path, sizeof path, "%s/bench.json", dir);
    char *t = slurp(path, &n);
    ck_assert_ptr_nonnull(t);
    cJSON *a = cJSON_Parse(t), *b = cJSON_Parse(doc);
    ck_assert_msg(a && cJSON_Compare(a, b, 1), "bench.json differs from the document");
    free(t);

    /* bench.csv: a header and one record per device and result, 13 fields each */
    snprintf(path, sizeof path, "%s/bench.csv", dir);
    t = slurp(path, &n);
    ck_assert_ptr_nonnull(t);
    const char *p = t;
    static char f[16][256];
    ck_assert_int_eq(csv_record(&p, f), 13);
    ck_assert_str_eq(f[0], "device");
    ck_assert_str_eq(f[4], "id");
    ck_assert_str_eq(f[9], "median");
    int rows = 0, quoted = 0, nulls = 0;
    while (*p) {
        ck_assert_int_eq(csv_record(&p, f), 13);
        rows++;
        quoted += !strcmp(f[5], "teacher, \"dropout\" B=128");
        if (!strcmp(f[4], "step.teacher.b128") && !strcmp(f[0], "AMD EPYC"))
            nulls += f[10][0] == '\0' && f[11][0] == '\0' && !strcmp(f[9], "150");
    }
    ck_assert_int_eq(rows, 7 + 5);
    ck_assert_int_eq(quoted, 2);
    ck_assert_int_eq(nulls, 1);
    free(t);

    /* report.md: every metadata field of every device, a table per kind, the plots */
    snprintf(path, sizeof path, "%s/report.md", dir);
    t = slurp(path, &n);
    ck_assert_ptr_nonnull(t);
    static const char *const want[] = {
        "| device |", "| vendor |", "| platform |", "| platform vendor |",
        "| platform version |", "| driver |", "| OpenCL |", "| OpenCL C |", "| type |",
        "| compute units |", "| clock (MHz) |", "| global memory (bytes) |",
        "| max allocation (bytes) |", "| local memory (bytes) |", "| fp16 |", "| fp64 |",
        "| CLBlast |", "| GEMM parameters from |", "| GEMM tuning |", "| convolution |",
        "| context creation (s) |", "| first CLBlast call (s) |", "| program builds (s) |",
        "The pocl project", "Intel(R) Corporation", "| shipped |", "| defaults |", "| 1.5.3 |",
        "abc1234", "kdcl bench --quick --all-devices", "## GEMM (GFLOP/s)",
        "## Training (samples/s)", "## Inference (images/s)", "## Training step, device time (ms)",
        "## Time to a test error (s)", "![Time to a test error](time.png)",
        "60 [55-62]", "| n/a |", "![GEMM](gemm.png)", "![Training](train.png)",
        "![Inference](infer.png)", "## Failures on AMD EPYC", "infer: something failed"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(t, want[i]), "report.md has no '%s':\n%s", want[i], t);
    ck_assert_msg(!strstr(t, "(defaults) ("), "the CLBlast-default GEMM rows are in the tables");
    free(t);
    static const char *const pngs[] = {"gemm.png", "train.png", "time.png", "infer.png"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, pngs[i]);
        if (i < 3) check_png(path); /* infer: one device only */
        struct stat st;
        ck_assert_int_eq(stat(path, &st), 0);
    }
    snprintf(path, sizeof path, "%s/step.png", dir);
    struct stat st;
    ck_assert_int_ne(stat(path, &st), 0);
    cJSON_Delete(a);
    cJSON_Delete(b);

    /* tools/bench_compare.py --compare: the document against its report directory */
    const char *root = getenv("KDCL_SOURCE_ROOT");
    if (root && system("python3 -c 'import json' >/dev/null 2>&1") == 0) {
        char out[4400];
        snprintf(out, sizeof out, "%s", tu_path("compare.md"));
        snprintf(cmd, sizeof cmd, "python3 %s/tools/bench_compare.py --compare %s %s --md %s",
                 root, in, dir, out);
        ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
        t = slurp(out, &n);
        ck_assert_ptr_nonnull(t);
        ck_assert_msg(strstr(t, "| teacher fwd | GFLOP/s | 60.0 [55.0-62.0] | 60.0 [55.0-62.0] | "
                                "1.00x | within noise |") &&
                          strstr(t, "| teacher out | GFLOP/s | 3.00 | 3.00 | 1.00x | one "
                                    "repetition") &&
                          strstr(t, "## AMD EPYC (Intel(R) OpenCL 2026)"),
                      "compare:\n%s", t);
        free(t);
    }

    /* bad input: one line, exit 2 */
    snprintf(cmd, sizeof cmd, "bench --report %s --from %s/report.md", dir, dir);
    tu_expect_fail(cmd, 2, "not a kdcl-bench-1 JSON file");
    snprintf(cmd, sizeof cmd, "bench --from %s", in);
    tu_expect_fail(cmd, 2, "--from needs --report");
    snprintf(cmd, sizeof cmd, "bench --report %s --from %s", in, in);
    tu_expect_fail(cmd, 2, "--report");
    snprintf(cmd, sizeof cmd, "bench --report %s --from %s/missing.json", dir, dir);
    tu_expect_fail(cmd, 2, "cannot open");
    free(r);
}
END_TEST

/* A real run (quick, GEMMs only) on the suite's device: every metadata
 * field the report shows is in bench.json, with a value of its type, and
 * the report's files are there. */
START_TEST(test_report_real_run)
{
    char dir[4200], cmd[9000], path[4400];
    snprintf(dir, sizeof dir, "%s", tu_path("report-real"));
    tu_run_result *r = malloc(sizeof *r);
    snprintf(cmd, sizeof cmd, "bench --quick --gemm-only --report %s", dir);
    tu_run(r, cmd);
    ck_assert_msg(r->status == 0, "exit %d: %s%s", r->status, r->out, r->err);
    free(r);
    size_t n;
    snprintf(path, sizeof path, "%s/bench.json", dir);
    char *t = slurp(path, &n);
    ck_assert_ptr_nonnull(t);
    cJSON *root = cJSON_Parse(t);
    ck_assert_ptr_nonnull(root);
    free(t);
    static const char *const top[] = {"schema", "kdcl_version", "git", "command_line", "date"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        ck_assert_msg(cJSON_IsString(cJSON_GetObjectItem(root, top[i])) &&
                          *cJSON_GetObjectItem(root, top[i])->valuestring,
                      "no \"%s\"", top[i]);
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(root, "command_line")->valuestring,
                                 "kdcl bench --quick --gemm-only --report"));
    cJSON *devs = cJSON_GetObjectItem(root, "devices");
    ck_assert_int_eq(cJSON_GetArraySize(devs), 1);
    cJSON *d = cJSON_GetArrayItem(devs, 0);
    static const char *const strings[] = {
        "label", "device", "vendor", "platform", "platform_vendor", "platform_version", "driver",
        "opencl_version", "opencl_c_version", "type", "clblast_version", "gemm_params_source",
        "gemm_tuning", "conv_algo"};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        ck_assert_msg(cJSON_IsString(cJSON_GetObjectItem(d, strings[i])) &&
                          *cJSON_GetObjectItem(d, strings[i])->valuestring,
                      "device has no \"%s\"", strings[i]);
    const char *src = cJSON_GetObjectItem(d, "gemm_params_source")->valuestring;
    ck_assert_msg(!strcmp(src, "cache") || !strcmp(src, "shipped") || !strcmp(src, "defaults"),
                  "gemm_params_source %s", src);
    static const char *const numbers[] = {"compute_units", "clock_mhz", "global_mem_bytes",
                                          "max_alloc_bytes", "local_mem_bytes"};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        ck_assert_msg(cJSON_IsNumber(cJSON_GetObjectItem(d, numbers[i])), "device has no \"%s\"",
                      numbers[i]);
    ck_assert(cJSON_GetObjectItem(d, "max_alloc_bytes")->valuedouble > 0);
    static const char *const bools[] = {"fp16", "fp64", "max_alloc_capped"};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++)
        ck_assert_msg(cJSON_IsBool(cJSON_GetObjectItem(d, bools[i])), "device has no \"%s\"",
                      bools[i]);
    static const char *const build[] = {"context_seconds", "clblast_first_call_seconds",
                                        "build_seconds", "builds", "cache_hits"};
    cJSON *b = cJSON_GetObjectItem(d, "build");
    for (size_t i = 0; i < sizeof build / sizeof build[0]; i++)
        ck_assert_msg(cJSON_IsNumber(cJSON_GetObjectItem(b, build[i])), "build has no \"%s\"",
                      build[i]);
    int gemms = 0;
    cJSON *res;
    cJSON_ArrayForEach(res, cJSON_GetObjectItem(d, "results"))
        gemms += !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(res, "kind")), "gemm");
    ck_assert_int_ge(gemms, 8); /* the teacher's products at B = 128 */
    cJSON_Delete(root);
    static const char *const files[] = {"bench.csv", "report.md", "gemm.png"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        struct stat st;
        ck_assert_msg(stat(path, &st) == 0 && st.st_size > 100, "%s missing", path);
    }
}
END_TEST

static Suite *report_suite(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("report");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_report_files);
    tcase_add_test(tc, test_report_real_run);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(report_suite()); }
