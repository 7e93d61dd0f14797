/* Small kernels the runtime tests use to check program building and launch. */
__kernel void axpb(__global float *y, const float a, const float b, const unsigned n)
{
    size_t i = get_global_id(0);
    if (i < n) y[i] = a * y[i] + b;
}
