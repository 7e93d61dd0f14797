/* GEMM kernel parameters measured with CLBlast's own tuner
 * (clblast_tuner_xgemm, from Debian's clblast-utils) on the devices kdcl was
 * developed on. Included by gemm.c only. Parameter names are CLBlast's. */
static const tuned_device kdcl_gemm_tuned[] = {
    /* PoCL 3.1 (pthread), 2-core AMD EPYC (Zen, AVX2), CLBlast 1.5.3:
     * clblast_tuner_xgemm -m 512 -n 512 -k 512 -fraction 0.02: best of 578
     * random configurations (GEMMK = 0 phase), 35.9 GFLOP/s in the tuner at
     * 512^3 against 7.1 GFLOP/s with CLBlast's defaults. The indirect kernel is
     * used from 256^3 up (XGEMM_MIN_INDIRECT_SIZE): at the MLP shapes the whole
     * routine runs at 17-25 GFLOP/s against 7 with the defaults (kdcl gemm), the
     * 10-wide output layer stays on the direct kernel. At 1024^3 these tiles are
     * slower than the defaults (9.3 vs 11.4 GFLOP/s). */
    {"Portable Computing Language",
     CL_DEVICE_TYPE_CPU,
     "",
     "shipped: PoCL CPU (clblast_tuner_xgemm)",
     {{"Xgemm",
       16,
       {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB", "NDIMC", "NWG", "SA",
        "SB", "STRM", "STRN", "VWM", "VWN"},
       {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 4, 4}},
      {"GemmRoutine", 1, {"XGEMM_MIN_INDIRECT_SIZE"}, {256}}}},
};
