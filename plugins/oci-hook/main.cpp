int main() { return 1; } // placeholder: plugins/oci-hook is being written
