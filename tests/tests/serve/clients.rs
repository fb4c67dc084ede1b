//! Real clients pull from hyperd's registry endpoint on loopback.
