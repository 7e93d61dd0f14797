/* Specialists: the KL combination kernel (placeholder). */
__kernel void specialists_placeholder(__global float *x) { x[0] = 0.0f; }
