// A real Java client: java.net.http.HttpClient in its default version (HTTP_2, which offers an
// h2c upgrade on plain http). Run with the source launcher: java JavaClient.java <stream|abort> <baseURL>
import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;

public class JavaClient {
  public static void main(String[] args) throws Exception {
    String mode = args[0], base = args[1];
    HttpClient client = HttpClient.newHttpClient();
    System.out.println("VERSION " + client.version());
    HttpRequest request = HttpRequest.newBuilder(URI.create(base + "/responses"))
        .header("Content-Type", "application/json")
        .header("Authorization", "Bearer sk-client-own-key")
        .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"fake-model\",\"input\":\"Say hello\",\"stream\":true}"))
        .build();
    HttpResponse<InputStream> response = client.send(request, HttpResponse.BodyHandlers.ofInputStream());
    System.out.println("STATUS " + response.statusCode() + " " + response.version());
    InputStream body = response.body();
    BufferedReader reader = new BufferedReader(new InputStreamReader(body, StandardCharsets.UTF_8));
    String line;
    while ((line = reader.readLine()) != null) {
      if (line.isEmpty()) continue;
      System.out.println(line);
      System.out.flush();
      if (mode.equals("abort") && line.startsWith("data:") && line.contains("output_text.delta")) {
        body.close(); // cancels the exchange: the connection is closed
        System.out.println("ABORTED");
        System.out.flush();
        System.exit(0);
      }
    }
    System.exit(0);
  }
}
