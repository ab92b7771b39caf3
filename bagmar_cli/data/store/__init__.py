"""Writing dataset directories: where they live (paths), staging and publishing them (staging), and the two
forms a split takes on disk: uint8 tensor files (tensors) or lists of image files with their report (lists)."""
