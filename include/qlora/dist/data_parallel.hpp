// Data parallelism over a Communicator: every rank holds the whole model and its own share of each micro-batch
// (data/batch.hpp RankShare); after the backward passes of a step the LoRA gradients are summed across ranks, so each
// rank clips and updates the same summed gradient and the adapters stay equal without being sent again.
//
//   sum_gradients      the gradients, concatenated and cut into buckets of at most `bucket_bytes` (PyTorch DDP's
//                      25 MiB by default), summed bucket by bucket through one reused buffer; a parameter with no
//                      gradient on a rank (its share of the step was empty) counts as zeros
//   broadcast_values   rank 0's values of the parameters to every rank (the initial adapter, a resumed one)
//   check_same_job     every rank must run the same job: the texts given (configuration, data fingerprint, ...)
//                      are compared with rank 0's, and a difference is an error on every rank that names the rank
//                      and the first differing line
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../optim/parameter.hpp"
#include "communicator.hpp"

namespace qlora::dist {

inline constexpr std::size_t default_bucket_bytes = std::size_t{25} << 20;

namespace detail {
// The parameters' values (or gradients) as one concatenation, cut into buckets of at most `bucket_bytes`; a large
// parameter spans several buckets. For each bucket: gather its pieces of `part(i)` into `scratch` (grown to the
// bucket size on `device` when smaller), call `collective(bucket)`, scatter the bucket back.
template <class Part, class Collective>
void through_buckets(const ParameterList& params, std::size_t bucket_bytes, Device device, Tensor<float, Dyn>& scratch,
                     Part&& part, Collective&& collective) {
  index_t total = 0;
  for (const auto& p : params) total += p.numel();
  const index_t per_bucket = std::max<index_t>(1, static_cast<index_t>(bucket_bytes / sizeof(float)));
  const index_t size = std::min(total, per_bucket);
  if (!scratch.defined() || scratch.numel() < size || !(scratch.device() == device))
    scratch = Tensor<float, Dyn>(Shape<Dyn>(size), device);
  struct Piece {
    Tensor<float, Dyn> flat;
    index_t from, to, length;  // elements [from, from + length) of the parameter at [to, to + length) of the bucket
  };
  std::size_t i = 0;
  index_t inside = 0;  // elements of params[i] already in earlier buckets
  while (i < params.size()) {
    std::vector<Piece> pieces;
    index_t used = 0;
    while (i < params.size() && used < per_bucket) {
      const index_t n = std::min(params[i].numel() - inside, per_bucket - used);
      pieces.push_back({part(i), inside, used, n});
      used += n;
      inside += n;
      if (inside == params[i].numel()) {
        ++i;
        inside = 0;
      }
    }
    const Tensor<float, Dyn> bucket = scratch.slice(0, used);
    for (const Piece& p : pieces) bucket.slice(p.to, p.to + p.length).copy_from(p.flat.slice(p.from, p.from + p.length));
    collective(bucket);
    for (const Piece& p : pieces) p.flat.slice(p.from, p.from + p.length).copy_from(bucket.slice(p.to, p.to + p.length));
  }
}
}  // namespace detail

// The gradients of `params`, summed across ranks (in place). `what` names the collective ("gradients of step 3");
// `scratch` is the bucket buffer, kept by the caller between steps (no allocation per step).
inline void sum_gradients(Communicator& comm, const ParameterList& params, const std::string& what,
                          Tensor<float, Dyn>& scratch, std::size_t bucket_bytes = default_bucket_bytes) {
  if (comm.size() == 1) return;
  detail::through_buckets(params, bucket_bytes, comm.device(), scratch,
                          [&](std::size_t i) { return params[i].ensure_grad(); },
                          [&](const Tensor<float, Dyn>& bucket) {
                            comm.all_reduce_sum(std::span<float>(bucket.data(), static_cast<std::size_t>(bucket.numel())), what);
                          });
}

// Rank 0's parameter values on every rank.
inline void broadcast_values(Communicator& comm, const ParameterList& params, const std::string& what,
                             std::size_t bucket_bytes = default_bucket_bytes) {
  if (comm.size() == 1) return;
  Tensor<float, Dyn> scratch;
  detail::through_buckets(params, bucket_bytes, Device::cpu(), scratch, [&](std::size_t i) { return params[i].value(); },
                          [&](const Tensor<float, Dyn>& bucket) {
                            comm.broadcast(std::as_writable_bytes(std::span<float>(
                                               bucket.data(), static_cast<std::size_t>(bucket.numel()))), 0, what);
                          });
}

// Fails on every rank when some rank's `text` differs from rank 0's: "rank 2 runs another job than rank 0: its
// <what> differs at line 7: '  \"learning_rate\": 0.001,' (rank 0: '  \"learning_rate\": 0.0002,')".
inline void check_same_job(Communicator& comm, const std::string& text, const std::string& what) {
  if (comm.size() == 1) return;
  const std::vector<std::string> all = comm.all_gather(text, what);
  for (std::size_t r = 1; r < all.size(); ++r) {
    if (all[r] == all[0]) continue;
    std::istringstream a(all[0]), b(all[r]);
    std::string la, lb;
    long line = 0;
    while (true) {
      ++line;
      const bool more_a = static_cast<bool>(std::getline(a, la)), more_b = static_cast<bool>(std::getline(b, lb));
      if (!more_a) la = "(end)";
      if (!more_b) lb = "(end)";
      if (la != lb || (!more_a && !more_b)) break;
    }
    fail("dist", "rank ", r, " runs another job than rank 0: its ", what, " differs at line ", line, ": '", lb,
         "' (rank 0: '", la, "'); every rank must be started with the same flags, data and model");
  }
}

}  // namespace qlora::dist
