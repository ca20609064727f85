"""Device drivers (camera and QR, thermometer, GPIO and Wiegand, door, voice, LCD),
each with a simulator that speaks the same interface and timing. They import nothing
of gate or sync."""
