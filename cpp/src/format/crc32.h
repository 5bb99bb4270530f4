// CRC-32 (IEEE 802.3, reflected, as zlib.crc32): the BSPC payload checksum.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rtmobile {

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace rtmobile
