"""Files in and out: photos, depth files, the result file, and writing outputs all or none."""
