#pragma once
// The normalized Walsh-Hadamard transform H/sqrt(n) (orthogonal and its own inverse), applied per
// attention head before K/V are quantized: it spreads outlier channels over the whole head so that
// group quantization loses less. Rotating q the same way leaves q·k unchanged; the attention output,
// a weighted sum of rotated V rows, is rotated back by applying it once more.
namespace optiq::kernels {

inline bool hadamard_supported(int n) { return n >= 2 && (n & (n - 1)) == 0; }
// In place on x[0..n), n a power of two.
void hadamard(float* x, int n);

}  // namespace optiq::kernels
