#!/usr/bin/env python3
"""PyTorch's figures for the shapes of qlora_cuda_bench, on the same GPU and in the same run (scripts/gpu-check):
bf16 GEMMs through torch.matmul (cuBLAS, zeros like qlora's benchmark and random data), and attention through
torch's scaled_dot_product_attention (its flash kernel where it takes the shape) with Gemma 3 270M's heads
(4 query heads, 1 KV head, head_dim 256), causal, forward and forward + backward. Prints a table and writes JSON
(first argument, default torch_reference.json). Skips with a message where torch or a GPU is missing."""
import json
import sys


def timed(fn, warmup=3, reps=10):
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps / 1e3  # seconds per call


def main(out_path):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("torch_reference: skipped (no torch)")
        return 0
    if not torch.cuda.is_available():
        print("torch_reference: skipped (no GPU)")
        return 0
    rows = []
    for m, k, n in [(2048, 2560, 10240), (2048, 10240, 2560), (8192, 8192, 8192)]:
        for data in ("zeros", "random"):
            make = torch.zeros if data == "zeros" else torch.randn
            a = make(m, k, device="cuda", dtype=torch.bfloat16)
            w = make(n, k, device="cuda", dtype=torch.bfloat16)
            s = timed(lambda: a @ w.t())
            rows.append({"name": f"matmul_bf16/{m}/{k}/{n}/{data}", "seconds": s, "TFLOP/s": 2 * m * n * k / s / 1e12})
    for t in (512, 1024, 2048, 4096, 8192):
        q = torch.randn(1, 4, t, 256, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(1, 1, t, 256, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(1, 1, t, 256, device="cuda", dtype=torch.bfloat16, requires_grad=True)

        def forward():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

        def forward_backward():
            forward().sum().backward()

        with torch.no_grad():
            rows.append({"name": f"sdpa_forward/{t}", "seconds": timed(forward)})
        rows.append({"name": f"sdpa_forward_backward/{t}", "seconds": timed(forward_backward)})
    for r in rows:
        extra = f"  {r['TFLOP/s']:.0f} TFLOP/s" if "TFLOP/s" in r else ""
        print(f"{r['name']:<40} {r['seconds'] * 1e3:10.3f} ms{extra}")
    with open(out_path, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "torch_reference.json"))
