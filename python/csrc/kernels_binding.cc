// Test hooks into the per-ISA kernel tables (private API: rtmobile_rt._core._kernels), so
// pytest can check every ISA's activations against numpy in float64.
#include <pybind11/numpy.h>

#include <string>

#include "bindings.h"
#include "kernels/kernels.h"

namespace py = pybind11;

namespace rtmobile::python {
namespace {

py::array_t<float> apply(UnaryFn KernelTable::*fn, const std::string& isa,
                         const py::array_t<float, py::array::c_style | py::array::forcecast>& x) {
  const KernelTable& table = select_kernels(isa);
  py::array_t<float> y(x.request().shape);
  (table.*fn)(static_cast<size_t>(x.size()), x.data(), y.mutable_data());
  return y;
}

}  // namespace

void register_kernels(py::module_& m) {
  py::module_ k = m.def_submodule("_kernels", "per-ISA kernels, for tests");
  k.def("sigmoid", [](const py::array_t<float, py::array::c_style | py::array::forcecast>& x,
                      const std::string& isa) { return apply(&KernelTable::sigmoid, isa, x); },
        py::arg("x"), py::arg("isa"));
  k.def("tanh", [](const py::array_t<float, py::array::c_style | py::array::forcecast>& x,
                   const std::string& isa) { return apply(&KernelTable::tanh, isa, x); },
        py::arg("x"), py::arg("isa"));
}

}  // namespace rtmobile::python
