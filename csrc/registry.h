// Each csrc/bind/*.cpp registers its functions with FASTPANC_BIND(name) { ... } so that
// csrc/bindings.cpp stays the only place that defines the module.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <utility>
#include <vector>

namespace fastpanc {
using BindFn = void (*)(pybind11::module_&);
std::vector<std::pair<const char*, BindFn>>& binders();
struct Binder {
  Binder(const char* name, BindFn fn) { binders().emplace_back(name, fn); }
};
}  // namespace fastpanc

#define FASTPANC_BIND(name)                                                   \
  static void fastpanc_bind_##name(pybind11::module_& m);                     \
  static ::fastpanc::Binder fastpanc_binder_##name(#name, fastpanc_bind_##name); \
  static void fastpanc_bind_##name(pybind11::module_& m)
