"""Small helpers shared by the local tools (emulator, simulator, demo); never deployed."""
