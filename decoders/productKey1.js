// Sample up_raw decoder of product `productKey1` (the quickstart's up_raw sample,
// examples/quickstart.jsonl: base64 "AQMEAAoBAv9+" = 01 03 04 00 0A 01 02 FF 7E).
//
// Sluice calls rawDataToProtocol(bytes) with the raw payload as an array of numbers 0-255 and
// expects the JSON request the product would have posted on a JSON integration topic; its
// `method` picks the kind (integration.measurepoint.post, integration.attribute.post,
// integration.event.post). Throwing an Error rejects the payload (reply code 1270).
//
// The frame is a Modbus "read holding registers" response:
//   [slave address, function 0x03, byte count, register bytes (big-endian)..., CRC lo, CRC hi]
// Register 0 is the temperature in tenths of a degree, register 1 the power.
function rawDataToProtocol(bytes) {
    if (bytes.length < 5 || bytes[1] !== 0x03) {
        throw new Error("not a Modbus read-holding-registers response");
    }
    var count = bytes[2];
    if (count < 4 || bytes.length !== 3 + count + 2) {
        throw new Error("frame length " + bytes.length + " does not match byte count " + count);
    }
    var reg = function (i) { return (bytes[3 + 2 * i] << 8) | bytes[4 + 2 * i]; };
    return {
        version: "1.0",
        method: "integration.measurepoint.post",
        params: [
            {
                deviceKey: "device" + bytes[0],
                measurepoints: {
                    temp: reg(0) / 10,
                    Power: { value: reg(1), quality: 0 }
                }
            }
        ]
    };
}
