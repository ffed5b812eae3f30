// Files in and out, safely. `MappedFile` maps a whole file read-only (mmap), so a multi-gigabyte checkpoint costs no
// copy and only the pages a reader touches are loaded; `AtomicFileWriter` writes "<path>.tmp-<pid>", flushes it to
// disk (fsync) and renames it over <path>, so a reader or a crash never sees a half-written file.
//
//   MappedFile f("model.safetensors", "safetensors");   // errors start with "[safetensors] model.safetensors: ..."
//   AtomicFileWriter out("adapter.gguf", "gguf");  out.write(bytes, n);  out.commit();
// A writer destroyed without commit() (an exception on the way) removes its temporary file. Also here, shared by the
// file readers: `detail::file_extents`, which checks a stored shape against the Tensor type it is read into.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/shape.hpp"

namespace qlora {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `path`; `component` names the format in error messages ("safetensors", "gguf").
  explicit MappedFile(const std::filesystem::path& path, const char* component = "io")
      : path_(path), component_(component) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(component, path.string(), ": cannot open: ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      fail(component, path.string(), ": cannot stat: ", std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      fail(component, path.string(), ": not a regular file");
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {  // mmap of length 0 is an error; an empty file maps to nothing
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        fail(component, path.string(), ": cannot map ", size_, " bytes: ", std::strerror(err));
      }
      data_ = static_cast<const std::uint8_t*>(p);
    }
    ::close(fd);  // the mapping keeps the file alive
  }
  MappedFile(MappedFile&& other) noexcept { swap(other); }
  MappedFile& operator=(MappedFile&& other) noexcept {
    MappedFile tmp(std::move(other));
    swap(tmp);
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
  }

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  // Gives the pages read so far back to the kernel (they count in the resident set while the file stays mapped):
  // for a model file once its weights have been copied out. The mapping stays valid; a later read loads the page
  // from the file again. No-op where the system has no MADV_DONTNEED.
  void release_pages() const {
#ifdef MADV_DONTNEED
    if (data_) ::madvise(const_cast<std::uint8_t*>(data_), size_, MADV_DONTNEED);
#endif
  }
  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }
  const char* component() const { return component_; }

 private:
  void swap(MappedFile& o) noexcept {
    std::swap(path_, o.path_);
    std::swap(component_, o.component_);
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
  }
  std::filesystem::path path_;
  const char* component_ = "io";
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

// Writes a file under a temporary name and publishes it with one rename (POSIX rename is atomic within a
// filesystem). Writes are buffered; commit() flushes, fsyncs the file, renames it and fsyncs the directory.
class AtomicFileWriter {
 public:
  AtomicFileWriter(const std::filesystem::path& path, const char* component = "io")
      : path_(path), tmp_(path.string() + ".tmp-" + std::to_string(::getpid())), component_(component) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail(component, path.string(), ": cannot create ", tmp_.string(), ": ", std::strerror(errno));
    buffer_.reserve(kBufferBytes);
  }
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter() {
    if (fd_ >= 0) {  // not committed: leave nothing behind
      ::close(fd_);
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
  }

  void write(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    position_ += n;
    if (buffer_.size() + n <= kBufferBytes) {
      buffer_.insert(buffer_.end(), p, p + n);
      return;
    }
    flush_buffer();
    if (n >= kBufferBytes)
      write_all(p, n);
    else
      buffer_.insert(buffer_.end(), p, p + n);
  }
  void write(std::span<const std::uint8_t> bytes) { write(bytes.data(), bytes.size()); }
  void write_zeros(std::size_t n) {
    static constexpr std::uint8_t zeros[64] = {};
    for (; n > 0; n -= std::min<std::size_t>(n, sizeof zeros)) write(zeros, std::min<std::size_t>(n, sizeof zeros));
  }
  template <class T>
  requires std::is_trivially_copyable_v<T>
  void write_value(const T& v) { write(&v, sizeof v); }
  // Bytes written so far (the offset of the next byte in the final file).
  std::uint64_t position() const { return position_; }

  // Makes the file visible under its final name; the writer is finished afterwards.
  void commit() {
    require(fd_ >= 0, component_, path_.string(), ": commit() called twice");
    flush_buffer();
    if (::fsync(fd_) != 0) fail(component_, path_.string(), ": fsync failed: ", std::strerror(errno));
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) {
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
      fail(component_, path_.string(), ": close failed: ", std::strerror(errno));
    }
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
      const int err = errno;
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
      fail(component_, path_.string(), ": cannot rename ", tmp_.string(), " into place: ", std::strerror(err));
    }
    std::filesystem::path dir = path_.parent_path();
    if (dir.empty()) dir = ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {  // make the rename itself durable; best effort (some filesystems refuse directory fsync)
      ::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  static constexpr std::size_t kBufferBytes = std::size_t{1} << 20;

  void flush_buffer() {
    write_all(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
  void write_all(const std::uint8_t* p, std::size_t n) {
    while (n > 0) {
      const ::ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail(component_, path_.string(), ": write failed: ", std::strerror(errno));
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }

  std::filesystem::path path_, tmp_;
  const char* component_;
  int fd_ = -1;
  std::vector<std::uint8_t> buffer_;
  std::uint64_t position_ = 0;
};

}  // namespace qlora

namespace qlora::detail {

// "[640, ?]": the extents a Tensor type fixes, "?" where it leaves the extent to run time.
template <class... Ds>
std::string expected_shape_str() {
  std::string s = "[";
  int i = 0;
  auto add = [&](bool is_static, index_t value) {
    if (i++) s += ", ";
    s += is_static ? std::to_string(value) : std::string("?");
  };
  (add(Ds::is_static, Ds::value), ...);
  (void)add;  // rank 0
  return s + "]";
}
inline std::string shape_str(const std::vector<index_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// The extents of a tensor stored in a file, checked against the Tensor type it is read into; the error names the
// file, the tensor and both shapes.
template <class... Ds>
std::array<index_t, sizeof...(Ds)> file_extents(const char* component, const std::filesystem::path& file,
                                                std::string_view tensor, const std::vector<index_t>& shape) {
  std::array<index_t, sizeof...(Ds)> out{};
  bool ok = shape.size() == sizeof...(Ds);
  if constexpr (sizeof...(Ds) > 0) {  // (a scalar has no extent to check)
    if (ok) {
      constexpr std::array<index_t, sizeof...(Ds)> fixed = {Ds::value...};
      for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = shape[i];
        if (fixed[i] >= 0 && fixed[i] != shape[i]) ok = false;
      }
    }
  }
  if (!ok)
    fail(component, file.string(), ": tensor ", tensor, ": shape ", shape_str(shape),
         " in the file, but the type expects ", expected_shape_str<Ds...>());
  return out;
}

}  // namespace qlora::detail
