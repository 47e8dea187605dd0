// The pybind11 module fastpanc._C: build facts plus every op registered in csrc/bind/.
#include <string>
#include <vector>

#include "registry.h"

#ifdef FASTPANC_WITH_OPENMP
#include <omp.h>
#endif
#ifdef FASTPANC_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace fastpanc {
std::vector<std::pair<const char*, BindFn>>& binders() {
  static std::vector<std::pair<const char*, BindFn>> list;
  return list;
}
}  // namespace fastpanc

namespace {
std::vector<int> cuda_archs() {
  std::vector<int> out;
#ifdef FASTPANC_CUDA_ARCHS
  std::string s = FASTPANC_CUDA_ARCHS;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t next = s.find(',', pos);
    std::string tok = s.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    std::string digits;
    for (char c : tok)
      if (c >= '0' && c <= '9') digits += c;
    if (!digits.empty()) out.push_back(std::stoi(digits));
    if (next == std::string::npos) break;
    pos = next + 1;
  }
#endif
  return out;
}
}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastpanc compiled kernels (C++/OpenMP, optional CUDA)";
#ifdef FASTPANC_WITH_OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
#ifdef FASTPANC_WITH_CUDA
  m.attr("cuda_compiled") = true;
#else
  m.attr("cuda_compiled") = false;
#endif
  m.attr("cuda_archs") = cuda_archs();
  m.def("max_threads", []() {
#ifdef FASTPANC_WITH_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  }, "Threads the OpenMP kernels use.");
  m.def("set_num_threads", [](int n) {
#ifdef FASTPANC_WITH_OPENMP
    if (n > 0) omp_set_num_threads(n);
#endif
  }, "Set the number of OpenMP threads of the CPU kernels.");
  m.def("cuda_device_count", []() {
#ifdef FASTPANC_WITH_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
#else
    return 0;
#endif
  }, "Number of CUDA devices the CUDA runtime sees (0 without a CUDA build).");
  std::vector<std::string> names;
  for (auto& entry : fastpanc::binders()) {
    entry.second(m);
    names.emplace_back(entry.first);
  }
  m.attr("registered_ops") = names;
}
