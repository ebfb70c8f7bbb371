import CHDF5

/// Datasets of a group: written contiguous, row-major, with fixed little-endian file types;
/// read from any layout HDF5 supports (contiguous, compact, chunked, gzip-compressed).
///
/// Every reader validates the dataspace (rank at most 8, element count without overflow, at most
/// `maxElements`) and the optional expected shape before allocating anything, and refuses
/// datasets whose values live in other files — HDF5 external storage and virtual datasets —
/// before reading any value: HDF5 would open whatever files they name (FIFOs and devices
/// included).
extension HDF5Group {
    // MARK: - Writing

    /// Writes `floats` as a new float32 (IEEE little-endian) dataset of shape `shape`
    /// (`[]` = scalar). The element count must equal the product of `shape`.
    package func writeDataset(_ name: String, floats: UnsafeBufferPointer<Float>, shape: [Int]) throws {
        try writeDataset(name, fileType: chdf5_H5T_IEEE_F32LE(), memoryType: chdf5_H5T_NATIVE_FLOAT(),
                         count: floats.count, data: floats.baseAddress.map(UnsafeRawPointer.init), shape: shape)
    }

    /// Writes `int64s` as a new int64 (little-endian) dataset of shape `shape` (`[]` = scalar).
    package func writeDataset(_ name: String, int64s: [Int64], shape: [Int]) throws {
        try int64s.withUnsafeBytes { bytes in
            try writeDataset(name, fileType: chdf5_H5T_STD_I64LE(), memoryType: chdf5_H5T_NATIVE_INT64(),
                             count: int64s.count, data: bytes.baseAddress, shape: shape)
        }
    }

    /// Writes `doubles` as a new float64 (IEEE little-endian) dataset of shape `shape` (`[]` = scalar).
    package func writeDataset(_ name: String, doubles: [Double], shape: [Int]) throws {
        try doubles.withUnsafeBytes { bytes in
            try writeDataset(name, fileType: chdf5_H5T_IEEE_F64LE(), memoryType: chdf5_H5T_NATIVE_DOUBLE(),
                             count: doubles.count, data: bytes.baseAddress, shape: shape)
        }
    }

    /// Creates a contiguous dataset and writes `count` elements to it. A dataset that could not be
    /// written completely is unlinked again.
    private func writeDataset(_ name: String, fileType: hid_t, memoryType: hid_t, count: Int,
                              data: UnsafeRawPointer?, shape: [Int]) throws {
        let target = childPath(name)
        let context = "cannot write dataset \(target)"
        try requireOpen(context)
        try HDF5Library.validateName(name, what: "dataset")
        let expected = try HDF5Library.elementCount(of: shape, context)
        if count != expected {
            throw HDF5Error("\(context): \(count) values do not match shape \(shape) (\(expected) elements)")
        }
        let space = try HDF5Library.createSpace(shape: shape, context)
        defer { H5Sclose(space) }
        let dcpl = try HDF5Library.check(H5Pcreate(chdf5_H5P_DATASET_CREATE()), "\(context): cannot create property list")
        defer { H5Pclose(dcpl) }
        // Every element is written right away, so fill values would only cost time.
        try HDF5Library.check(status: H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), "\(context): cannot set fill time")
        // No modification times in object headers: the same model always gives the same bytes.
        try HDF5Library.check(status: H5Pset_obj_track_times(dcpl, false), "\(context): cannot turn off time tracking")
        let dataset = try HDF5Library.check(
            H5Dcreate2(id, name, fileType, space, hid_t(H5P_DEFAULT), dcpl, hid_t(H5P_DEFAULT)), context)
        var error: HDF5Error?
        if count > 0 {
            if let data {
                if H5Dwrite(dataset, memoryType, chdf5_H5S_ALL(), chdf5_H5S_ALL(), hid_t(H5P_DEFAULT), data) < 0 {
                    error = HDF5Library.failure(context)
                }
            } else {
                error = HDF5Error("\(context): no data")
            }
        }
        if H5Dclose(dataset) < 0, error == nil { error = HDF5Library.failure(context) }
        if let error {
            _ = H5Ldelete(id, name, hid_t(H5P_DEFAULT))
            HDF5Library.clearErrors()
            throw error
        }
    }

    // MARK: - Reading

    /// The shape of dataset `name` (`[]` for a scalar).
    package func datasetShape(_ name: String) throws -> [Int] {
        try withDataset(name) { _, _, shape, _ in shape }
    }

    /// Reads a dataset of any floating-point class (float16/32/64 converted by HDF5 to native float;
    /// float32 is bit-exact).
    ///
    /// Refuses integer/string/compound classes with a message naming dataset path and found type;
    /// refuses more than `maxElements` elements (checked from the dataspace before allocating); if
    /// `expectedShape` is non-nil and differs, throws e.g.
    /// "dataset /layers/0001/weight_0 has shape [3, 4], expected [4, 4]".
    package func readFloats(_ name: String, expectedShape: [Int]? = nil,
                    maxElements: Int = 1 << 28) throws -> (values: [Float], shape: [Int]) {
        try withDataset(name) { dataset, type, shape, label in
            try requireClass(type, H5T_FLOAT, "floating-point", label)
            let count = try checkedCount(shape, expectedShape: expectedShape, maxElements: maxElements, label)
            let values = try HDF5ElementReader.floats(count: count, context: "cannot read \(label)") {
                H5Dread(dataset, $0, chdf5_H5S_ALL(), chdf5_H5S_ALL(), hid_t(H5P_DEFAULT), $1)
            }
            return (values, shape)
        }
    }

    /// Reads a dataset of any floating-point class as native `Double`s (same checks as ``readFloats(_:expectedShape:maxElements:)``).
    package func readDoubles(_ name: String, expectedShape: [Int]? = nil,
                     maxElements: Int = 1 << 28) throws -> (values: [Double], shape: [Int]) {
        try withDataset(name) { dataset, type, shape, label in
            try requireClass(type, H5T_FLOAT, "floating-point", label)
            let count = try checkedCount(shape, expectedShape: expectedShape, maxElements: maxElements, label)
            let values = try HDF5ElementReader.doubles(count: count, context: "cannot read \(label)") {
                H5Dread(dataset, $0, chdf5_H5S_ALL(), chdf5_H5S_ALL(), hid_t(H5P_DEFAULT), $1)
            }
            return (values, shape)
        }
    }

    /// Reads a dataset of any integer class (size up to 8 bytes, signed or unsigned) as `Int64`s
    /// (same checks as ``readFloats(_:expectedShape:maxElements:)``; unsigned values above
    /// `Int64.max` are refused).
    package func readInt64s(_ name: String, expectedShape: [Int]? = nil,
                    maxElements: Int = 1 << 28) throws -> (values: [Int64], shape: [Int]) {
        try withDataset(name) { dataset, type, shape, label in
            try requireClass(type, H5T_INTEGER, "integer", label)
            let count = try checkedCount(shape, expectedShape: expectedShape, maxElements: maxElements, label)
            let values = try HDF5ElementReader.int64s(count: count, fileType: type, context: "cannot read \(label)") {
                H5Dread(dataset, $0, chdf5_H5S_ALL(), chdf5_H5S_ALL(), hid_t(H5P_DEFAULT), $1)
            }
            return (values, shape)
        }
    }

    // MARK: - Helpers

    /// Opens dataset `name` with its type and validated shape, runs `body` with a label such as
    /// "dataset /layers/0001/weight_0", and closes everything.
    private func withDataset<T>(
        _ name: String,
        _ body: (_ dataset: hid_t, _ type: hid_t, _ shape: [Int], _ label: String) throws -> T
    ) throws -> T {
        let label = "dataset \(childPath(name))"
        try requireOpen("cannot read \(label)")
        try HDF5Library.validateName(name, what: "dataset")
        guard hasChild(name) else { throw HDF5Error("\(label) does not exist in \(file.name)") }
        guard isDataset(name) else { throw HDF5Error("\(label): " + notAnObject(name, "\(childPath(name)) is not a dataset")) }
        let dataset = try HDF5Library.check(H5Dopen2(id, name, hid_t(H5P_DEFAULT)), "cannot open \(label)")
        defer { H5Dclose(dataset) }
        try requireStorageInFile(dataset, label)
        let type = try HDF5Library.check(H5Dget_type(dataset), "cannot read the type of \(label)")
        defer { H5Tclose(type) }
        let space = try HDF5Library.check(H5Dget_space(dataset), "cannot read the dataspace of \(label)")
        defer { H5Sclose(space) }
        guard let shape = try HDF5Library.shape(ofSpace: space, label) else {
            throw HDF5Error("\(label) has no data (empty dataspace)")
        }
        return try body(dataset, type, shape, label)
    }

    /// Throws unless the values of `dataset` are stored in this file: no external data files, not a
    /// virtual dataset.
    private func requireStorageInFile(_ dataset: hid_t, _ label: String) throws {
        let dcpl = try HDF5Library.check(H5Dget_create_plist(dataset), "cannot read the storage of \(label)")
        defer { H5Pclose(dcpl) }
        let external = H5Pget_external_count(dcpl)
        if external < 0 { throw HDF5Library.failure("cannot read the storage of \(label)") }
        if external > 0 {
            throw HDF5Error("\(label) keeps its values in \(external) other file(s) (HDF5 external storage); "
                + "only values stored in the file itself are read")
        }
        if H5Pget_layout(dcpl) == H5D_VIRTUAL {
            throw HDF5Error("\(label) is a virtual dataset (its values are mapped from other datasets, possibly in other "
                + "files); only values stored in the file itself are read")
        }
    }

    /// Throws unless `type` is of class `typeClass`, naming what was found.
    private func requireClass(_ type: hid_t, _ typeClass: H5T_class_t, _ wanted: String, _ label: String) throws {
        if !HDF5Library.isClass(type, typeClass) {
            throw HDF5Error("\(label): expected \(wanted) data, found \(HDF5Library.describe(type: type))")
        }
    }

    /// Checks `shape` against `expectedShape` and `maxElements`; returns the element count.
    private func checkedCount(_ shape: [Int], expectedShape: [Int]?, maxElements: Int, _ label: String) throws -> Int {
        if let expectedShape, expectedShape != shape {
            throw HDF5Error("\(label) has shape \(shape), expected \(expectedShape)")
        }
        let count = try HDF5Library.elementCount(of: shape, label)
        if count > maxElements {
            throw HDF5Error("\(label) has \(count) elements, more than the limit of \(maxElements)")
        }
        return count
    }
}
