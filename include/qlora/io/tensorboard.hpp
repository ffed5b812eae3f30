// TensorBoard event files, written by hand to the documented record format so training logs open in TensorBoard
// with no Python or protobuf dependency.
//
// A file is a sequence of TFRecords: u64 LE length | u32 LE masked CRC-32C of those 8 bytes | payload |
// u32 LE masked CRC-32C of the payload, with mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. Each payload is a
// serialized tensorflow.Event protobuf: the first holds file_version "brain.Event:2", the others a Summary with
// one scalar Value{tag, simple_value} at a step (field numbers in tensorboard/compat/proto/event.proto and
// summary.proto). File name: events.out.tfevents.<10-digit unix time>.<host>.<pid>.<n>, as torch's SummaryWriter.
#pragma once

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "../core/error.hpp"

namespace qlora::tensorboard {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
inline std::uint32_t crc32c(const void* data, std::size_t n) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t crc = 0xFFFFFFFFu;
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

inline std::uint32_t masked_crc32c(const void* data, std::size_t n) {
  const std::uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// The few protobuf wire encodings an Event needs.
namespace wire {
inline void varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
inline void tag(std::string& out, int field, int wire_type) { varint(out, static_cast<std::uint64_t>(field << 3 | wire_type)); }
template <class T>
void fixed(std::string& out, T value) {  // little-endian fixed64 (double) / fixed32 (float)
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}
inline void bytes_field(std::string& out, int field, std::string_view payload) {
  tag(out, field, 2);
  varint(out, payload.size());
  out.append(payload);
}
}  // namespace wire

// Event{wall_time=1 (double), step=2 (int64), file_version=3 (string) | summary=5 (Summary)}.
inline std::string event_file_version(double wall_time) {
  std::string e;
  wire::tag(e, 1, 1);
  wire::fixed(e, wall_time);
  wire::bytes_field(e, 3, "brain.Event:2");
  return e;
}
// Event{wall_time, step, <field>: payload}; proto3 omits step 0.
inline std::string event_with(double wall_time, std::int64_t step, int field, std::string_view payload) {
  std::string e;
  wire::tag(e, 1, 1);
  wire::fixed(e, wall_time);
  if (step != 0) {
    wire::tag(e, 2, 0);
    wire::varint(e, static_cast<std::uint64_t>(step));
  }
  wire::bytes_field(e, field, payload);
  return e;
}
// Summary{value=1: Value{tag=1 (string), simple_value=2 (float)}}.
inline std::string event_scalar(double wall_time, std::int64_t step, std::string_view tag_name, float value) {
  std::string v;
  wire::bytes_field(v, 1, tag_name);
  wire::tag(v, 2, 5);
  wire::fixed(v, value);
  std::string summary;
  wire::bytes_field(summary, 1, v);
  return event_with(wall_time, step, 5, summary);
}

// Event{step, session_log=7: SessionLog{status=1: START (1)}}: a restart at `step`. TensorBoard's event
// accumulator then drops the earlier files' events at `step` and later (what torch's SummaryWriter(purge_step=...)
// writes), so a run resumed from a checkpoint shows each step once.
inline std::string event_session_start(double wall_time, std::int64_t step) {
  std::string log;
  wire::tag(log, 1, 0);
  wire::varint(log, 1);
  return event_with(wall_time, step, 7, log);
}

// length | masked crc(length) | payload | masked crc(payload)
inline std::string frame_record(std::string_view payload) {
  std::string r;
  const std::uint64_t len = payload.size();
  char len_bytes[8];
  std::memcpy(len_bytes, &len, 8);
  r.append(len_bytes, 8);
  wire::fixed(r, masked_crc32c(len_bytes, 8));
  r.append(payload);
  wire::fixed(r, masked_crc32c(payload.data(), payload.size()));
  return r;
}

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Appends scalars to one event file in `log_dir` (created if missing); each record is flushed as it is written.
class EventWriter {
 public:
  explicit EventWriter(const std::filesystem::path& log_dir) {
    std::error_code ec;
    std::filesystem::create_directories(log_dir, ec);
    if (ec) fail("tensorboard", log_dir.string(), ": cannot create the log directory: ", ec.message());
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    const double t = now_seconds();
    path_ = log_dir / ("events.out.tfevents." + std::to_string(static_cast<long long>(t)) + "." + host + "." +
                       std::to_string(getpid()) + ".0");
    out_.open(path_, std::ios::binary | std::ios::app);
    if (!out_) fail("tensorboard", path_.string(), ": cannot open for writing");
    write(event_file_version(t));
  }
  void add_scalar(std::string_view tag, float value, std::int64_t step, double wall_time = now_seconds()) {
    write(event_scalar(wall_time, step, tag, value));
  }
  // A resumed run: the events earlier runs wrote for steps after `last_kept_step` are to be dropped (-1: all).
  void resume_after(std::int64_t last_kept_step, double wall_time = now_seconds()) {
    write(event_session_start(wall_time, last_kept_step + 1));
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  void write(std::string_view payload) {
    const std::string record = frame_record(payload);
    out_.write(record.data(), static_cast<std::streamsize>(record.size()));
    out_.flush();
    if (!out_) fail("tensorboard", path_.string(), ": write failed");
  }
  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace qlora::tensorboard
