int main() { return 1; } // placeholder: plugins/kubectl is being written
