#include "model/memory/latent_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/memory/staged_memory.h"

namespace lutq::model {
namespace {

// One query row over its keys: every head at once, position by position, so that each key row
// and each latent row is read once for all the heads that use it (n_rep query heads share a kv
// head; per head, the loop would stream the whole K and ĉ n_head times).
struct RowAttention {
  const MemoryShape& s;
  const LatentValues& v;
  const float* q;  // [n_head][head_dim] of this row
  const float* k;  // [n][kv_dim]
  int64_t keys;
  float scale;
  bool avx2;

  int64_t kvd() const { return s.n_head_kv * s.head_dim; }
  int64_t group(int64_t h) const { return h / (s.n_head / s.n_head_kv); }

  // scores [n_head][keys] at positions [a, b): scale·q_h·k_j.
  void scores(int64_t a, int64_t b, float* out) const {
    auto* dot = avx2 ? &dot_avx2 : &dot_scalar;
    const int64_t hd = s.head_dim;
    for (int64_t j = a; j < b; ++j) {
      const float* kj = k + j * kvd();
      for (int64_t h = 0; h < s.n_head; ++h) out[h * keys + j] = dot(q + h * hd, kj + group(h) * hd, hd) * scale;
    }
  }
  // z [n_head][width] += Σ_{j in [a, b)} p_hj ĉ_j[value columns of h's kv head].
  void sum_latents(const float* p, int64_t a, int64_t b, float* z) const {
    auto* axpy = avx2 ? &axpy_avx2 : &axpy_scalar;
    for (int64_t j = a; j < b; ++j) {
      const float* cj = v.c + j * v.r + v.base;
      for (int64_t h = 0; h < s.n_head; ++h) axpy(p[h * keys + j], cj + group(h) * v.stride, z + h * v.width, v.width);
    }
  }
  // The whole row on one thread: z [n_head][width] (zeroed here); p: scratch [n_head][keys].
  void run(float* p, float* z) const {
    scores(0, keys, p);
    for (int64_t h = 0; h < s.n_head; ++h) softmax(p + h * keys, keys);
    std::fill(z, z + s.n_head * v.width, 0.0f);
    sum_latents(p, 0, keys, z);
  }
  // The same over the pool: positions split among the threads, partial sums added at the end.
  void run(float* p, float* z, ThreadPool& pool) const {
    const int threads = pool.size();
    const auto chunk = [&](int index, int64_t& a, int64_t& b) {
      a = keys * index / threads;
      b = keys * (index + 1) / threads;
    };
    pool.run([&](int index, int) {
      int64_t a = 0, b = 0;
      chunk(index, a, b);
      scores(a, b, p);
    });
    pool.run([&](int index, int count) {
      for (int64_t h = index; h < s.n_head; h += count) softmax(p + h * keys, keys);
    });
    const int64_t zn = s.n_head * v.width;
    std::vector<float> part(static_cast<size_t>(threads * zn), 0.0f);
    pool.run([&](int index, int) {
      int64_t a = 0, b = 0;
      chunk(index, a, b);
      sum_latents(p, a, b, part.data() + index * zn);
    });
    std::fill(z, z + zn, 0.0f);
    for (int i = 0; i < threads; ++i) {
      for (int64_t x = 0; x < zn; ++x) z[x] += part[static_cast<size_t>(i * zn + x)];
    }
  }
};

}  // namespace

Status attend_latent(const MemoryShape& s, const AttentionRows& in, std::span<const int64_t> rows, const float* k,
                     const LatentValues& v, float* out, OpIsa ops, ThreadPool& pool) {
  const int64_t hd = s.head_dim;
  const int64_t kvd = s.n_head_kv * hd;
  const int64_t q_stride = s.n_head * hd;
  const int64_t n_rep = s.n_head / s.n_head_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const auto m = static_cast<int64_t>(rows.size());
  const int64_t zn = s.n_head * v.width;
  auto* dot = ops.avx2 ? &dot_avx2 : &dot_scalar;
  // z [m][n_head][width]: Σ_j p_j ĉ_j over the value columns of each head's kv group.
  std::vector<float> z(static_cast<size_t>(m * zn), 0.0f);
  const auto row = [&](int64_t i) {
    const int64_t t = rows[static_cast<size_t>(i)];
    return RowAttention{s, v, in.q + t * q_stride, k, in.rows[static_cast<size_t>(t)].pos + 1, scale, ops.avx2};
  };
  const int64_t keys0 = row(0).keys;
  const bool serial = pool.size() == 1 || m * keys0 * s.n_head * (hd + v.width) * 2 < kMinParallelFlops;
  if (m == 1 && !serial) {  // decode: one row, its positions over the pool
    std::vector<float> p(static_cast<size_t>(s.n_head * keys0));
    row(0).run(p.data(), z.data(), pool);
  } else {  // prefill (or small): whole rows per thread
    const auto body = [&](int index, int count) {
      std::vector<float> p;
      for (int64_t i = index; i < m; i += count) {
        const RowAttention ra = row(i);
        p.resize(static_cast<size_t>(s.n_head * ra.keys));
        ra.run(p.data(), z.data() + i * zn);
      }
    };
    if (serial) {
      body(0, 1);
    } else {
      pool.run(body);
    }
  }
  if (v.map == nullptr && v.kv == nullptr) {  // rebuilt values: z is the output
    for (int64_t i = 0; i < m; ++i) {
      std::copy_n(z.data() + i * zn, zn, out + rows[static_cast<size_t>(i)] * q_stride);
    }
    return Status::ok();
  }
  if (v.map == nullptr) {  // the latent is x: the layer's v linear on z, bias included
    std::vector<float> vz(static_cast<size_t>(m * s.n_head * kvd));
    if (Status st = v.kv->project_values(z.data(), m * s.n_head, vz.data(), pool); !st) return st;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t h = 0; h < s.n_head; ++h) {
        std::copy_n(vz.data() + (i * s.n_head + h) * kvd + (h / n_rep) * hd, hd,
                    out + rows[static_cast<size_t>(i)] * q_stride + h * hd);
      }
    }
    return Status::ok();
  }
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t h = 0; h < s.n_head; ++h) {
      const int64_t g = h / n_rep;
      const float* a = v.map + g * hd * v.width;
      const float* zh = z.data() + i * zn + h * v.width;
      float* o = out + rows[static_cast<size_t>(i)] * q_stride + h * hd;
      for (int64_t c = 0; c < hd; ++c) {
        o[c] = dot(a + c * v.width, zh, v.width) + (v.bias.empty() ? 0.0f : v.bias[static_cast<size_t>(g * hd + c)]);
      }
    }
  }
  return Status::ok();
}

}  // namespace lutq::model
