.pragma library

// Byte counts and durations as people read them.
function bytes(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var i = 0
    var v = n
    while (v >= 1024 && i < units.length - 1) {
        v /= 1024
        ++i
    }
    return (i === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 1 : 0)) + " " + units[i]
}

function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds))
    if (seconds < 60)
        return qsTr("%1 s").arg(seconds)
    var m = Math.floor(seconds / 60)
    var s = seconds % 60
    if (m < 60)
        return qsTr("%1 min %2 s").arg(m).arg(s)
    return qsTr("%1 h %2 min").arg(Math.floor(m / 60)).arg(m % 60)
}
