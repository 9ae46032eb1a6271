"""The console's screens, one per module (loaded lazily by the app; see `console.tui.app.SCREENS`)."""
