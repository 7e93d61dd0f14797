/* GEMM kernel parameters measured with CLBlast's own tuner
 * (clblast_tuner_xgemm, from Debian's clblast-utils) on the devices kdcl was
 * developed on. Included by gemm.c only. Parameter names are CLBlast's. */
/* NVIDIA H100 (NVIDIA OpenCL 3.0, driver 580.159.04): nothing ships. kdcl tune
 * (clblast_tuner_xgemm / _direct at 1024^3, 280 s) found sets 1.15-1.6x
 * faster than CLBlast's own at the B = 1024 products but 0.5x at B = 128
 * (64x64 direct tiles leave most of the 132 SMs idle for a 128-row product):
 * training at batch 128 ran 266,599 samples/s with CLBlast's parameters and
 * 196,149 with the tuned ones (README, GEMM tuning). */
static const tuned_device kdcl_gemm_tuned[] = {
    /* PoCL 3.1 (pthread), 2-core AMD EPYC (Zen 1, AVX2), CLBlast 1.5.3, chosen
     * by timing CLBlast's SGEMM routine at the MLP's shapes (kdcl tune's own
     * candidate search, see src/cli/cmd_tune.c). PoCL runs the work-items of a
     * group as a loop around each region between barriers, so without local
     * memory (SA = SB = 0) every work-item streams its whole A and B panels
     * through the cache before the next one starts; with SA = SB = 1 a 64 x 64
     * block of the KWG-deep panels is copied once per work-group and the
     * work-item loop runs over L1-resident tiles. VWM = VWN = 8 makes the
     * accumulators float8 (AVX ymm registers, 8 per work-item, no spills).
     * Xgemm kernel alone: 39 GFLOP/s at 128x1200x784 against 18 with the
     * clblast_tuner_xgemm result shipped before (VWM = VWN = 4, SA = SB = 0,
     * 16 xmm accumulators that spill); routine (with CLBlast's pad /
     * transpose copies): 25-32 GFLOP/s at the B = 128 shapes, 35 at B = 1024;
     * with kdcl's operand packing (gemm.c) 34-38 and 38-39.
     *
     * XgemmDirect (every product below XGEMM_MIN_INDIRECT_SIZE^3 = 256^3
     * multiply-adds, among them the per-image convolution products of
     * kdcl_gemm_batched): one work-item per 8 x 8 tile (WGD = 8, MDIMCD =
     * NDIMCD = 1), float4 vectors. For the same reason as above PoCL runs
     * best with few work-items per group: at the ResNet-20 product 16 x 1024
     * x 144 (x 128 images) 21 ms against 43 with 2 x 2 work-items, 66 with
     * 4 x 4 and 86 with CLBlast's default (2 x 8 x 8, 32-wide tiles); 8 x 8
     * with float8 was within 5 % there but 1.4x slower at cnn-small's 64 x
     * 196 x 288; 16 x 16 tiles per work-item did not finish compiling in 5
     * minutes. Against CLBlast's default parameters (same run, batch 128, the
     * forward / weight-gradient / input-gradient products of the presets'
     * convolutions): LeNet 6 x 784 x 25 9.7 -> 3.5 ms, 16 x 150 x 100 (NT)
     * 8.3 -> 2.8, 150 x 100 x 16 (TN) 7.6 -> 3.6; cnn-small 64 x 196 x 288
     * 80 -> 30, 288 x 196 x 64 (TN) 82 -> 25; ResNet-20 16 x 144 x 1024 (NT)
     * 60 -> 27, 64 x 64 x 576 53 -> 19; Linear 128 x 120 x 400 1.28 -> 0.50.
     * Timed with another training job on both cores: ratios, not rates. */
    {"Portable Computing Language",
     CL_DEVICE_TYPE_CPU,
     "",
     "shipped: PoCL CPU (kdcl tune candidate search at the MLP shapes)",
     {{"Xgemm",
       16,
       {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB", "NDIMC", "NWG", "SA",
        "SB", "STRM", "STRN", "VWM", "VWN"},
       {0, 1, 64, 2, 8, 8, 64, 8, 8, 64, 1, 1, 0, 0, 8, 8}},
      {"GemmRoutine", 1, {"XGEMM_MIN_INDIRECT_SIZE"}, {256}},
      {"XgemmDirect",
       10,
       {"KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD", "PADA", "PADB", "VWMD", "VWND", "WGD"},
       {2, 1, 1, 1, 1, 1, 1, 4, 4, 8}}}},
    /* Intel's OpenCL CPU runtime (platform "Intel(R) OpenCL", 2026.2 from PyPI)
     * on a 2-core AMD EPYC, CLBlast 1.5.3, chosen by kdcl's automatic tuning
     * (gemm.c; KDCL_AUTOTUNE=wide explored random sets beside the table).
     * Intel's compiler vectorises across the work-items of dimension 0, so
     * the sets that suit PoCL (local-memory tiles, 8 x 8 work-items, float8)
     * ran at a quarter to a half of this one: no local memory, 16 x 16
     * work-items, strided access (STRM = STRN = 1: neighbouring work-items
     * read neighbouring vectors), float4 x float8, 128 x 128 x 64 tiles.
     * Routine with kdcl's operand packing, teacher B = 128 products,
     * 28-31 GFLOP/s against 5-9 with CLBlast's parameters and 9-15 with
     * these parameters unpacked (same run, load average 3.2-4.0 on 2 cores:
     * ratios, not rates); CLBlast's default switch sent the B = 128 products
     * (~490^3 multiply-adds) to the direct kernel, hence
     * XGEMM_MIN_INDIRECT_SIZE = 256 as for PoCL. Keyed on the platform name
     * and the CPU type only, so it applies to Intel's runtime on any x86-64
     * CPU; `kdcl tune` or a cache file still takes precedence. */
    {"Intel(R)",
     CL_DEVICE_TYPE_CPU,
     "",
     "shipped: Intel OpenCL CPU runtime (kdcl automatic tuning)",
     {{"Xgemm",
       16,
       {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB", "NDIMC", "NWG", "SA",
        "SB", "STRM", "STRN", "VWM", "VWN"},
       {0, 1, 64, 2, 16, 16, 128, 16, 16, 128, 0, 0, 1, 1, 4, 8}},
      {"GemmRoutine", 1, {"XGEMM_MIN_INDIRECT_SIZE"}, {256}},
      {NULL, 0, {NULL}, {0}}}},
};
