// Each binding file registers the classes of one core header; module.cc only calls these.
#pragma once

#include <pybind11/pybind11.h>

namespace rtmobile::python {

void register_errors(pybind11::module_& m);
void register_session(pybind11::module_& m);
void register_kernels(pybind11::module_& m);

}  // namespace rtmobile::python
